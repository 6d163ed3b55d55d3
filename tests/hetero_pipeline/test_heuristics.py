import itertools

import numpy as np
import pytest

from envs.hetero_pipeline.generator import HeteroPipelineGenerator, ToyIdenticalGenerator
from envs.hetero_pipeline.instance import InstanceError, PipelinePlan, validate_plan
from envs.hetero_pipeline.simulator import iteration_time, simulate, total_work_lower_bound
from heuristics.exact.hetero_pipeline import pipeline_optimal
from heuristics.hetero_pipeline import HEURISTICS


@pytest.fixture(scope="module")
def small_instances():
    generator = HeteroPipelineGenerator(num_devices=(3, 4), speed_ratio=(1.0, 8.0))
    rng = np.random.default_rng(11)
    return [generator(rng) for _ in range(5)]


def test_heuristics_give_valid_memory_feasible_plans(generated_instances):
    for instance in generated_instances:
        for name, planner in HEURISTICS.items():
            plan = planner(instance)
            validate_plan(instance, plan)
            assert simulate(instance, plan).fits_memory, name


def test_optimum_is_no_worse_than_every_heuristic(small_instances):
    for instance in small_instances:
        best = iteration_time(instance, pipeline_optimal(instance))
        assert best >= total_work_lower_bound(instance) - 1e-9
        for name, planner in HEURISTICS.items():
            assert best <= iteration_time(instance, planner(instance)) + 1e-9, name


# instances where cluster_dp, the search's incumbent, is 2-4% off and the optimum has 3 stages
@pytest.mark.parametrize(("model", "ratio", "seed"), [("mobilenet_v2", 1.0, 4), ("resnet18", 4.0, 0)])
def test_optimum_matches_an_independent_exhaustive_search(model, ratio, seed):
    generator = HeteroPipelineGenerator(models=(model,), num_devices=(3, 3),
                                        speed_ratio=(ratio, ratio), num_microbatches=(3, 3))
    instance = generator(np.random.default_rng(seed))
    K, L = instance.num_devices, instance.num_layers
    exhaustive = np.inf
    # every device is idle (-1) or in one of S stages, every stage used; every cut vector
    for num_stages in range(1, min(K, L) + 1):
        for labels in itertools.product(range(-1, num_stages), repeat=K):
            groups = [tuple(d for d in range(K) if labels[d] == s) for s in range(num_stages)]
            if not all(groups):
                continue
            for inner in itertools.combinations(range(1, L), num_stages - 1):
                result = simulate(instance, PipelinePlan.from_groups(groups, (0, *inner, L)))
                if result.fits_memory:
                    exhaustive = min(exhaustive, result.iteration_s)
    assert iteration_time(instance, pipeline_optimal(instance)) == pytest.approx(exhaustive)
    assert exhaustive < 0.99 * iteration_time(instance, HEURISTICS["cluster_dp"](instance))


def test_optimum_finds_the_toy_optimum():
    toy = ToyIdenticalGenerator(num_devices=3, num_layers=6)
    instance = toy(np.random.default_rng(0))
    assert iteration_time(instance, pipeline_optimal(instance)) == pytest.approx(toy.optimum_s())


def test_cluster_dp_beats_pipedream_on_strong_heterogeneity():
    generator = HeteroPipelineGenerator(num_devices=(4, 6), speed_ratio=(8.0, 8.0))
    rng = np.random.default_rng(21)
    ratios = []
    for _ in range(4):
        instance = generator(rng)
        ratios.append(iteration_time(instance, HEURISTICS["cluster_dp"](instance))
                      / iteration_time(instance, HEURISTICS["pipedream_dp"](instance)))
    assert np.mean(ratios) < 1.0


def test_optimum_refuses_large_instances():
    generator = HeteroPipelineGenerator(num_devices=(7, 7))
    with pytest.raises(InstanceError, match="num_devices must be <= 6"):
        pipeline_optimal(generator(np.random.default_rng(0)))
