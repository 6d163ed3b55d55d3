import numpy as np
import pytest

from benchmarks.ps_runtime import RealRunConfig, run_allocations
from envs.param_server import Allocation, InstanceError, ZipfTopicGenerator, evaluate, synthesize
from heuristics.param_server import HEURISTICS

GENERATOR = ZipfTopicGenerator(num_blocks=10, num_shards=24, num_machines=2,
                               samples_range=(24, 48), nnz_per_sample=8.0,
                               shard_bytes_range=(256, 1024))


def test_two_process_gloo_run_on_loopback():
    instance = GENERATOR(np.random.default_rng(0))
    dataset = synthesize(instance, np.random.default_rng(1))
    allocations = {"hash": HEURISTICS["hash"](instance), "two_step": HEURISTICS["two_step"](
        instance), "all_on_0": Allocation(np.zeros(10), np.zeros(24))}
    results = run_allocations(dataset, instance, allocations,
                              RealRunConfig(iterations=2, rounds=1, warmup_iterations=1,
                                            bandwidth_bytes_per_s=None, timeout_s=60))
    for name, allocation in allocations.items():
        real, model = results[name], evaluate(instance, allocation)
        assert real.remote_bytes == model.remote_bytes, name
        assert sum(real.sent_bytes_per_rank) == sum(real.received_bytes_per_rank)
        assert real.iteration_s > 0 and real.losses[-1] < real.losses[0]
    assert results["all_on_0"].remote_bytes == 0
    # the allocation moves data and parameters, not the arithmetic
    np.testing.assert_allclose(results["hash"].losses, results["two_step"].losses, rtol=1e-4)
    np.testing.assert_allclose(results["hash"].losses, results["all_on_0"].losses, rtol=1e-4)


def test_mismatched_data_is_rejected_before_spawning():
    instance = GENERATOR(np.random.default_rng(0))
    other = synthesize(GENERATOR(np.random.default_rng(5)), np.random.default_rng(1))
    with pytest.raises(InstanceError, match="does not have instance"):
        run_allocations(other, instance, {"hash": HEURISTICS["hash"](instance)})
    dataset = synthesize(instance, np.random.default_rng(1))
    with pytest.raises(InstanceError, match="allocation 'bad'"):
        run_allocations(dataset, instance, {"bad": Allocation(np.zeros(3), np.zeros(24))})
