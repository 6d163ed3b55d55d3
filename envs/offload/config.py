"""Settings of ``pipesched/DnnOffload-v0`` (:class:`envs.offload.env.DnnOffloadEnv`)."""

from __future__ import annotations

from dataclasses import dataclass

from envs.env_config import require_integer, require_number
from envs.offload.generator import ProfileGenerator


@dataclass(frozen=True)
class OffloadConfig:
    """``max_jobs`` job slots of ``max_cuts`` candidate cuts (80: more than any shipped
    profile has cuts); ``reward_scale`` weighs the makespan-increase reward term,
    ``invalid_penalty`` the invalid-action term; the episode truncates after
    ``max_invalid_actions`` invalid actions."""

    max_jobs: int = 6
    max_cuts: int = 80
    reward_scale: float = 1.0
    invalid_penalty: float = 0.1
    max_invalid_actions: int = 64

    def __post_init__(self) -> None:
        require_integer(self, "max_jobs")
        require_integer(self, "max_cuts")
        require_number(self, "reward_scale")
        require_number(self, "invalid_penalty", 0.0)
        require_integer(self, "max_invalid_actions")

    def default_generator(self) -> ProfileGenerator:
        """2..``max_jobs`` jobs from the shipped profiles, mixed bandwidths."""
        return ProfileGenerator(min_jobs=2, max_jobs=self.max_jobs)
