"""Exact solvers against brute force; ``layer_level`` optimal on trees (and not claimed on DAGs)."""

import itertools

import numpy as np
import pytest

from envs.offload import OffloadInstance, Plan, simulate
from envs.offload.dag import job_option
from envs.offload.generator import RandomDagGenerator
from envs.offload.layer_sim import LayerPlan, job_parts, simulate_layers
from heuristics.exact import offload_optimal
from heuristics.exact.offload_dag import (
    layer_level_optimal,
    offload_dag_optimal,
    with_partitions,
)
from heuristics.offload_dag import layer_level, lower_bound, schedule_layers


def brute_force_layer_optimum(instance: OffloadInstance, options: list[int]) -> float:
    """Every device order consistent with the graphs times every uplink order; server layers
    (zero time here) as soon as ready. Tiny trees only."""
    parts = [job_parts(instance, j, c) for j, c in enumerate(options)]
    device = [(j, v) for j, p in enumerate(parts) for v in p.device]
    tensors = [(j, u) for j, p in enumerate(parts) for u in p.tensors]
    best = float("inf")
    for device_order in itertools.permutations(device):
        seen: set = set()
        valid = True
        for j, v in device_order:
            if any(p >= 0 and (j, p) not in seen for p in parts[j].graph.parents[v]):
                valid = False
                break
            seen.add((j, v))
        if not valid:
            continue
        for uplink_order in itertools.permutations(tensors):
            server_order = tuple((j, v) for j, p in enumerate(parts) for v in p.server)
            try:
                value = simulate_layers(instance, LayerPlan(tuple(options), device_order,
                                                            uplink_order, server_order)).makespan_s
            except Exception:  # a server order that waits on a later upload: not a candidate
                continue
            best = min(best, value)
    return best


def random_tree_case(rng: np.random.Generator, layers: tuple[int, int]) -> tuple:
    instance = RandomDagGenerator(num_jobs=int(rng.integers(2, 4)), num_layers=layers, tree=True,
                                  server_ratio=0.0, latency_s=0.0,
                                  bandwidth_mbps=float(rng.uniform(2, 10)))(rng)
    options = [int(rng.integers(0, job.num_cuts)) for job in instance.jobs]
    return instance, options


def test_layer_level_is_optimal_on_trees_against_brute_force():
    rng = np.random.default_rng(7)
    checked = 0
    while checked < 8:
        instance, options = random_tree_case(rng, (2, 3))
        if sum(len(job_parts(instance, j, c).device) for j, c in enumerate(options)) > 6:
            continue
        value = simulate_layers(instance, schedule_layers(instance, options)).makespan_s
        assert value == pytest.approx(brute_force_layer_optimum(instance, options), rel=1e-9)
        checked += 1


def test_layer_level_is_optimal_on_trees_against_cp_sat():
    rng = np.random.default_rng(11)
    for _ in range(15):
        instance, options = random_tree_case(rng, (2, 6))
        value = simulate_layers(instance, schedule_layers(instance, options)).makespan_s
        _, optimum_s, proven = layer_level_optimal(instance, options, time_limit_s=10)
        assert proven
        assert value <= optimum_s * (1 + 1e-6)


def test_layer_level_is_not_claimed_optimal_when_the_server_is_a_bottleneck():
    """With server time on trees the rule is a heuristic: some case shows a gap (this is why
    the benchmark measures it)."""
    rng = np.random.default_rng(2)
    gaps = []
    for _ in range(15):
        instance = RandomDagGenerator(num_jobs=3, num_layers=(2, 5), tree=True,
                                      server_ratio=0.3)(rng)
        options = [int(rng.integers(0, job.num_cuts)) for job in instance.jobs]
        value = simulate_layers(instance, schedule_layers(instance, options)).makespan_s
        gaps.append(value / layer_level_optimal(instance, options, 10)[1] - 1)
    assert max(gaps) > 1e-6 and min(gaps) > -1e-9


def test_layer_level_is_never_worse_than_its_job_level_start():
    rng = np.random.default_rng(2)
    instance = RandomDagGenerator(num_jobs=3, server_ratio=0.4, latency_s=0.02)(rng)
    from heuristics.offload_dag import joint_dag

    job_level = simulate(instance, joint_dag(instance)).makespan_s
    assert simulate_layers(instance, layer_level(instance)).makespan_s <= job_level + 1e-9


def test_batch_optimum_over_all_partitions_matches_brute_force_and_beats_candidates():
    rng = np.random.default_rng(5)
    for _ in range(3):
        instance = RandomDagGenerator(num_jobs=2, num_layers=(2, 4), latency_s=0.01,
                                      server_ratio=0.5)(rng)
        result = offload_dag_optimal(instance, time_limit_s=20)
        assert result.proven_optimal
        graphs = [job.graph for job in instance.jobs]
        closed = [[np.array(bits) for bits in itertools.product((False, True), repeat=len(g))
                   if g.is_closed(np.array(bits))] for g in graphs]
        best = float("inf")
        for masks in itertools.product(*closed):
            augmented = with_partitions(instance, list(masks))
            options = [job_option(job, m) for job, m in zip(augmented.jobs, masks, strict=True)]
            for order in itertools.permutations(range(2)):
                plan = Plan(tuple((j, options[j]) for j in order))
                best = min(best, simulate(augmented, plan).makespan_s)
        assert result.makespan_s == pytest.approx(best, rel=1e-6)
        assert result.makespan_s <= offload_optimal(instance, time_limit_s=10).makespan_s + 1e-9
        assert lower_bound(instance) <= result.makespan_s * (1 + 1e-9)


def test_toy_fork_generator_optimum_is_reached_by_cp_sat_and_order_search():
    from envs.offload.generator import ToyForkGenerator
    from heuristics.offload_dag import order_search

    for num_jobs, branch_s, upload_s in ((4, 0.15, 0.2), (5, 0.1, 0.35), (3, 0.4, 0.1)):
        toy = ToyForkGenerator(num_jobs, branch_s, upload_s)
        instance = toy(np.random.default_rng(0))
        assert offload_dag_optimal(instance, time_limit_s=20).makespan_s == pytest.approx(
            toy.optimal_makespan_s())
        assert simulate(instance, order_search(instance)).makespan_s == pytest.approx(
            toy.optimal_makespan_s())
