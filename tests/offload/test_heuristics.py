import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs.offload import Layer, OffloadInstance, OffloadJob, ToyBalanceGenerator, simulate
from envs.offload.cuts import pareto_cuts
from heuristics.exact import brute_force_optimal, offload_optimal
from heuristics.offload import HEURISTICS, CutTable, johnson_order, lower_bound

times = st.floats(min_value=0.001, max_value=1.0, allow_nan=False)
sizes = st.integers(min_value=1_000, max_value=2_000_000)


@st.composite
def instances(draw, max_jobs=3, max_layers=3, server_free=False):
    jobs = []
    for j in range(draw(st.integers(1, max_jobs))):
        layers = tuple(
            Layer(f"l{k}", draw(times), 0.0 if server_free else draw(times) / 5, draw(sizes))
            for k in range(draw(st.integers(1, max_layers))))
        jobs.append(OffloadJob(f"job{j}", draw(sizes), layers))
    bandwidth = draw(st.sampled_from([0.13, 1.1, 5.85, 18.88]))
    return OffloadInstance(bandwidth, draw(st.sampled_from([0.0, 0.01])), tuple(jobs))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_exact_never_worse_than_any_heuristic_and_matches_brute_force(instance):
    exact = offload_optimal(instance, time_limit_s=20)
    assert exact.proven_optimal
    _, brute_s = brute_force_optimal(instance)
    tolerance = 1e-5 * brute_s + 1e-5
    assert exact.makespan_s == pytest.approx(brute_s, abs=tolerance)
    assert lower_bound(instance) <= exact.makespan_s + tolerance
    for name, planner in HEURISTICS.items():
        assert exact.makespan_s <= simulate(instance, planner(instance)).makespan_s + tolerance, name


@settings(max_examples=40, deadline=None)
@given(instances(max_jobs=5, max_layers=2, server_free=True), st.data())
def test_johnson_rule_is_optimal_with_two_resources(instance, data):
    """Server times zero: device then uplink is a two-machine flow shop for fixed cuts."""
    cuts = [data.draw(st.integers(0, job.num_layers)) for job in instance.jobs]
    table = CutTable(instance)
    steps = [table.step(j, cuts[j]) for j in range(instance.num_jobs)]
    order = johnson_order([d for d, _, _, _ in steps], [u for _, u, _, _ in steps])
    johnson_s = simulate(instance, [(j, cuts[j]) for j in order]).makespan_s
    best_s = min(simulate(instance, [(j, cuts[j]) for j in perm]).makespan_s
                 for perm in itertools.permutations(range(instance.num_jobs)))
    assert johnson_s == pytest.approx(best_s, rel=1e-9)


def test_toy_generator_known_optimum():
    generator = ToyBalanceGenerator(num_jobs=5, device_s=0.3, upload_s=0.2)
    instance = generator(np.random.default_rng(0))
    exact = offload_optimal(instance, time_limit_s=10)
    # best split: 2 jobs local (0.6 s), 3 uploaded (0.6 s)
    assert generator.optimal_makespan_s() == pytest.approx(0.6)
    assert exact.makespan_s == pytest.approx(generator.optimal_makespan_s(), rel=1e-6)
    assert simulate(instance, HEURISTICS["joint"](instance)).makespan_s == pytest.approx(0.6)


def test_pareto_cuts_drop_dominated_and_duplicates():
    device = np.array([0.0, 1.0, 1.0, 2.0, 3.0])
    upload = np.array([3.0, 2.0, 2.0, 0.0, 0.0])
    server = np.array([1.0, 1.0, 1.0, 0.0, 0.0])
    assert pareto_cuts(device, upload, server).tolist() == [0, 1, 3]


def test_neurosurgeon_runs_jobs_one_after_another(two_job_instance):
    plan = HEURISTICS["neurosurgeon"](two_job_instance)
    assert plan.sequential
    result = simulate(two_job_instance, plan)
    latencies = []
    for job, cut in plan:
        device, upload, server = (t[cut] for t in two_job_instance.cut_times(job))
        latencies.append(device + upload + server)
    assert result.makespan_s == pytest.approx(sum(latencies))
