"""Parameter-server allocation: place data blocks and parameter shards on machines.

``import envs; gymnasium.make("pipesched/ParamServer-v0")``. The model is documented in
:mod:`envs.param_server.simulator` and in ``docs/param_server.md``.
"""

from envs.param_server.config import ParamServerConfig
from envs.param_server.dataset import SparseDataset, synthesize
from envs.param_server.env import ParamServerEnv, play_allocation
from envs.param_server.generator import (
    ClusteredToyGenerator,
    DatasetGenerator,
    MachineProfile,
    MixtureGenerator,
    ZipfTopicGenerator,
)
from envs.param_server.instance import Allocation, InstanceError, ParamServerInstance
from envs.param_server.simulator import AllocationState, IterationResult, evaluate

__all__ = [
    "Allocation", "AllocationState", "ClusteredToyGenerator", "DatasetGenerator",
    "InstanceError", "IterationResult", "MachineProfile", "MixtureGenerator", "ParamServerConfig",
    "ParamServerEnv",
    "ParamServerInstance", "SparseDataset", "ZipfTopicGenerator", "evaluate", "play_allocation",
    "synthesize",
]
