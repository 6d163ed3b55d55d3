"""DNN offloading of chain and DAG jobs between a device and a server (``pipesched/DnnOffload-v0``)."""

from envs.offload.config import OffloadConfig
from envs.offload.dag import DagJob, DagLayer, dag_job_from_profile
from envs.offload.generator import (
    BANDWIDTH_CLASSES_MBPS,
    DagProfileGenerator,
    Generator,
    ProfileGenerator,
    RandomDagGenerator,
    ToyBalanceGenerator,
    ToyForkGenerator,
)
from envs.offload.instance import InstanceError, Layer, OffloadInstance, OffloadJob
from envs.offload.layer_sim import LayerPlan, expand_plan, simulate_layers
from envs.offload.profiles import available_models, job_from_profile, load_profile
from envs.offload.simulator import Interval, Plan, SimulationResult, Timeline, simulate

__all__ = [
    "BANDWIDTH_CLASSES_MBPS", "DagJob", "DagLayer", "DagProfileGenerator", "Generator",
    "InstanceError", "Interval", "Layer", "LayerPlan", "OffloadConfig", "OffloadInstance",
    "OffloadJob", "Plan", "ProfileGenerator", "RandomDagGenerator", "SimulationResult", "Timeline",
    "ToyBalanceGenerator", "ToyForkGenerator", "available_models", "dag_job_from_profile",
    "expand_plan", "job_from_profile", "load_profile", "simulate", "simulate_layers",
]
