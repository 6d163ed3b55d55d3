"""The layer-level timing model: hand case, expansion of job-level plans, bad plans."""

from dataclasses import replace

import numpy as np
import pytest

from envs.offload import InstanceError, OffloadInstance, Plan, simulate
from envs.offload.dag import DagJob, DagLayer
from envs.offload.generator import RandomDagGenerator
from envs.offload.layer_sim import LayerPlan, expand_plan, simulate_layers
from envs.offload.profiles import job_from_profile
from heuristics.offload import joint


def with_options(job: DagJob, *device_sets: str) -> DagJob:
    """``job`` offering exactly these device sets (and all-local last)."""
    return replace(job, partitions=tuple(frozenset(s) for s in device_sets)
                   + (frozenset(job.graph.names),))


def test_hand_computed_overlap(shared_tensor_job):
    """Device runs a, b; a's tensor (1000 B = 1 ms at 8 Mbit/s) leaves while b runs."""
    job = with_options(shared_tensor_job, "ab")
    instance = OffloadInstance(8.0, 0.5, (job,))
    option = job.option_of({"a", "b"})
    assert option is not None
    g = job.graph
    a, b, c, d = (g.index[n] for n in "abcd")
    plan = LayerPlan((option,), ((0, a), (0, b)), ((0, a), (0, b)), ((0, c), (0, d)))
    result = simulate_layers(instance, plan)
    # a: 0..1; upload a: 1..1+0.5+0.001; b: 1..2; upload b: 2..2.0002; c after upload a: 1.501..
    # 1.601; d after c and upload of b: 2.0002..2.1002
    assert result.makespan_s == pytest.approx(2.0002 + 0.1)
    job_level = simulate(instance, Plan(((0, option),))).makespan_s
    assert job_level == pytest.approx(2 + 0.5 + 0.0012 + 0.2)


def test_expanded_plans_are_never_slower_and_equal_for_chains():
    rng = np.random.default_rng(1)
    for _ in range(10):
        instance = RandomDagGenerator(num_jobs=3, latency_s=0.05, server_ratio=0.5)(rng)
        plan = joint(instance, time_limit_s=0.2)
        assert simulate_layers(instance, expand_plan(instance, plan)).makespan_s <= (
            simulate(instance, plan).makespan_s + 1e-9)
    chains = OffloadInstance(5.85, 0.01, (job_from_profile("alexnet", 8.0),
                                          job_from_profile("resnet18", 8.0)))
    for cuts in ((3, 5), (0, 10), (22, 0)):
        plan = Plan(((1, cuts[1]), (0, cuts[0])))
        assert simulate_layers(chains, expand_plan(chains, plan)).makespan_s == pytest.approx(
            simulate(chains, plan).makespan_s)


def test_bad_layer_plans_get_clear_errors(shared_tensor_job):
    job = with_options(shared_tensor_job, "ab")
    instance = OffloadInstance(8.0, 0.0, (job,))
    option = job.option_of({"a", "b"})
    g = job.graph
    a, b, c, d = (g.index[n] for n in "abcd")
    with pytest.raises(InstanceError, match="device_order: missing"):
        simulate_layers(instance, LayerPlan((option,), ((0, a),), ((0, a), (0, b)),
                                            ((0, c), (0, d))))
    with pytest.raises(InstanceError, match="deadlocks"):
        simulate_layers(instance, LayerPlan((option,), ((0, b), (0, a)), ((0, a), (0, b)),
                                            ((0, c), (0, d))))


def test_dag_job_layer_reading_two_parents_waits_for_both():
    job = DagJob("m", 8, (DagLayer("a", 1.0, 1.0, 8, ("input",)),
                          DagLayer("b", 2.0, 1.0, 8, ("input", "a"))))
    job = with_options(job, "a")
    instance = OffloadInstance(8.0, 0.0, (job,))
    option = job.option_of({"a"})
    plan = expand_plan(instance, Plan(((0, option),)))
    # input and a's tensor both go up (1 us each); b starts after the later one
    assert simulate_layers(instance, plan).makespan_s == pytest.approx(1.0 + 8e-6 + 1.0)
