"""DNN offloading of chain jobs between a device and a server (``pipesched/DnnOffload-v0``)."""

from envs.offload.generator import (
    BANDWIDTH_CLASSES_MBPS,
    Generator,
    ProfileGenerator,
    ToyBalanceGenerator,
)
from envs.offload.instance import InstanceError, Layer, OffloadInstance, OffloadJob
from envs.offload.profiles import available_models, job_from_profile, load_profile
from envs.offload.simulator import Interval, Plan, SimulationResult, Timeline, simulate

__all__ = [
    "BANDWIDTH_CLASSES_MBPS", "Generator", "InstanceError", "Interval", "Layer",
    "OffloadInstance", "OffloadJob", "Plan", "ProfileGenerator", "SimulationResult",
    "Timeline", "ToyBalanceGenerator", "available_models", "job_from_profile", "load_profile",
    "simulate",
]
