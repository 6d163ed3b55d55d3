"""Settings of ``pipesched/HeteroPipeline-v0`` (:class:`envs.hetero_pipeline.env.HeteroPipelineEnv`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from envs.env_config import freeze_weights, require_integer
from envs.hetero_pipeline.generator import HeteroPipelineGenerator

#: ``iteration_time``: minus the change of the completed plan's iteration time over the
#: reference time; ``invalid_action``: per invalid (masked-out) action, otherwise a no-op
REWARD_WEIGHTS = {"iteration_time": 1.0, "invalid_action": 0.1}


@dataclass(frozen=True)
class HeteroPipelineConfig:
    """``max_devices`` and ``max_layers`` pad the observation; ``reward_weights`` weighs the
    terms of :data:`REWARD_WEIGHTS` (a partial mapping keeps the other default); the episode
    truncates after ``max_steps_factor * (max_devices + max_layers)`` steps."""

    max_devices: int = 8
    max_layers: int = 12
    reward_weights: Mapping[str, float] = field(default_factory=lambda: dict(REWARD_WEIGHTS))
    max_steps_factor: int = 4

    def __post_init__(self) -> None:
        require_integer(self, "max_devices")
        require_integer(self, "max_layers")
        freeze_weights(self, "reward_weights", REWARD_WEIGHTS)
        require_integer(self, "max_steps_factor")

    def default_generator(self) -> HeteroPipelineGenerator:
        """3..6 devices of 1..3 capability classes over the shipped training profiles."""
        return HeteroPipelineGenerator()
