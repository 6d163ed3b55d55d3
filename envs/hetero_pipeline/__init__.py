"""Heterogeneous pipeline-parallel training: instance, 1F1B simulator, closed form, env."""

from envs.hetero_pipeline.closed_form import estimate_iteration_s
from envs.hetero_pipeline.config import HeteroPipelineConfig
from envs.hetero_pipeline.generator import HeteroPipelineGenerator, ToyIdenticalGenerator
from envs.hetero_pipeline.instance import (
    Device,
    InstanceError,
    LayerProfile,
    ModelProfile,
    PipelineInstance,
    PipelinePlan,
    Stage,
    load_profile,
)
from envs.hetero_pipeline.simulator import iteration_time, render_gantt, simulate

__all__ = [
    "Device", "HeteroPipelineConfig", "HeteroPipelineGenerator", "InstanceError", "LayerProfile",
    "ModelProfile", "PipelineInstance", "PipelinePlan", "Stage", "ToyIdenticalGenerator",
    "estimate_iteration_s", "iteration_time", "load_profile", "render_gantt", "simulate",
]
