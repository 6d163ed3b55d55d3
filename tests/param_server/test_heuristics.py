import numpy as np
import pytest

from envs.param_server import (
    ClusteredToyGenerator,
    MachineProfile,
    ZipfTopicGenerator,
    evaluate,
)
from envs.param_server.simulator import capacity_violations
from heuristics.exact.param_server import param_server_optimal
from heuristics.param_server import HEURISTICS, two_step

TIGHT = ZipfTopicGenerator(num_blocks=20, num_shards=48, num_machines=4,
                           machines=MachineProfile(memory_slack=1.0, heterogeneity=0.5))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", sorted(HEURISTICS))
def test_heuristics_respect_memory(name, seed):
    instance = TIGHT(np.random.default_rng(seed))
    allocation = HEURISTICS[name](instance)
    allocation.check(instance)
    assert capacity_violations(instance, allocation) == []


def test_two_step_beats_hash_on_clustered_data(zipf_instance):
    hashed = evaluate(zipf_instance, HEURISTICS["hash"](zipf_instance))
    partitioned = evaluate(zipf_instance, two_step(zipf_instance))
    assert partitioned.remote_bytes < hashed.remote_bytes
    assert partitioned.iteration_s < hashed.iteration_s


def test_toy_known_optimum():
    generator = ClusteredToyGenerator()
    instance = generator(np.random.default_rng(0))
    assert evaluate(instance, two_step(instance)).iteration_s == pytest.approx(
        generator.optimum_s())
    exact = param_server_optimal(instance, time_limit_s=20)
    assert exact.proven_optimal
    assert exact.iteration_s == pytest.approx(generator.optimum_s())
    assert exact.remote_bytes == 0


@pytest.mark.parametrize("seed", range(2))
def test_exact_is_no_worse_than_any_heuristic(seed):
    instance = ZipfTopicGenerator(num_blocks=6, num_shards=10, num_machines=3, num_topics=2,
                                  density=0.3, machines=MachineProfile(heterogeneity=0.4))(
        np.random.default_rng(seed))
    exact = param_server_optimal(instance, time_limit_s=30)
    assert exact.proven_optimal
    assert capacity_violations(instance, exact.allocation) == []
    assert exact.lower_bound_s <= exact.iteration_s * (1 + 1e-9)
    for name, planner in HEURISTICS.items():
        value = evaluate(instance, planner(instance)).iteration_s
        assert exact.iteration_s <= value * (1 + 1e-5), name
