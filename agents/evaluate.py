"""Run a Scheduler through an env and collect its final ``info``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from agents.scheduler import Scheduler


def run_episode(
    env: gym.Env,
    scheduler: Scheduler,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Play one episode with ``scheduler`` and return the final ``info`` dict."""
    observation, info = env.reset(seed=seed, options=options)
    scheduler.reset()
    while True:
        mask = np.asarray(info["action_mask"], dtype=bool)
        action = scheduler.act(observation, mask)
        observation, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return info
