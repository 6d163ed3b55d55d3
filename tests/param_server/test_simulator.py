import numpy as np
import pytest

from envs.param_server import Allocation, AllocationState, InstanceError, evaluate


def test_traffic_accounting_by_hand(hand_instance):
    # blocks 0,1 on m0 and block 2 on m1; shard 0 (100 B) on m1, shard 1 (1000 B) on m0.
    result = evaluate(hand_instance, Allocation([0, 0, 1], [1, 0]))
    # m0 touches shard 0 (owned by m1): remote; m1 touches shard 1 (owned by m0): remote.
    assert result.remote_bytes == 2 * 100 + 2 * 1000
    np.testing.assert_allclose(result.link_bytes, [200 + 2000, 200 + 2000])
    np.testing.assert_allclose(result.compute_s, [(50 + 30 + 20) / 100, 100 / 50])
    np.testing.assert_allclose(result.comm_s, [2200 / 1000, 2200 / 2000])
    assert result.iteration_s == pytest.approx(max(1 + 2.2, 2 + 1.1))
    # everything on m0: no traffic at all
    local = evaluate(hand_instance, Allocation([0, 0, 0], [0, 0]))
    assert local.remote_bytes == 0 and local.iteration_s == pytest.approx(200 / 100)


def test_serving_counts_every_remote_accessor(hand_instance):
    # shard 1 on m1 is touched by block 1 (m0) and block 2 (m1): one remote accessor
    result = evaluate(hand_instance, Allocation([0, 0, 1], [0, 1]))
    assert result.remote_bytes == 2 * 1000
    np.testing.assert_allclose(result.link_bytes, [2000, 2000])


def test_incremental_state_matches_evaluate(zipf_instance):
    rng = np.random.default_rng(0)
    for _ in range(5):
        allocation = Allocation(rng.integers(0, 4, zipf_instance.num_blocks),
                                rng.integers(0, 4, zipf_instance.num_shards))
        state = AllocationState(zipf_instance)
        estimates = [state.estimated_iteration_s]
        for block, machine in enumerate(allocation.block_machine):
            state.place_block(block, int(machine))
            estimates.append(state.estimated_iteration_s)
        for shard, machine in enumerate(allocation.shard_machine):
            rows = state.shard_machine_s(shard)
            state.place_shard(shard, int(machine))
            np.testing.assert_allclose(rows[machine], state.machine_s)
            estimates.append(state.estimated_iteration_s)
        assert np.all(np.diff(estimates) >= -1e-12), "estimate must never decrease"
        exact = evaluate(zipf_instance, allocation)
        assert state.estimated_iteration_s == pytest.approx(exact.iteration_s, rel=1e-12)
        assert state.remote_bytes == exact.remote_bytes
        block = 3
        target = (int(allocation.block_machine[block]) + 1) % 4
        predicted = state.block_machine_s(block)[target]
        state.move_block(block, target)
        np.testing.assert_allclose(predicted, state.machine_s)


def test_bad_allocation_is_rejected(hand_instance):
    with pytest.raises(InstanceError, match="block_machine' has 2 entries"):
        evaluate(hand_instance, Allocation([0, 0], [0, 0]))
    with pytest.raises(InstanceError, match=r"shard_machine'\[1\] = 5"):
        evaluate(hand_instance, Allocation([0, 0, 0], [0, 5]))
