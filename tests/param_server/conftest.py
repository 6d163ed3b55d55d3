import numpy as np
import pytest

from envs.param_server import ParamServerInstance, ZipfTopicGenerator


def hand_built(memory: int = 10**9) -> ParamServerInstance:
    """Two machines, three blocks, two shards; numbers chosen to be checked by hand."""
    return ParamServerInstance(
        name="hand", block_samples=np.array([10, 20, 30]), shard_bytes=np.array([100, 1000]),
        edge_block=np.array([0, 1, 1, 2]), edge_shard=np.array([0, 0, 1, 1]),
        edge_nnz=np.array([50, 30, 20, 100]),
        speed_nnz_per_s=np.array([100.0, 50.0]), bandwidth_bytes_per_s=np.array([1000.0, 2000.0]),
        memory_bytes=np.array([memory, memory]))


@pytest.fixture
def hand_instance() -> ParamServerInstance:
    return hand_built()


@pytest.fixture(scope="session")
def zipf_instance() -> ParamServerInstance:
    return ZipfTopicGenerator(num_blocks=24, num_shards=64, num_machines=4)(
        np.random.default_rng(0))
