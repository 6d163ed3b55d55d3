"""The one Scheduler protocol and the episode loop every layer above talks to.

Heuristics, exact planners wrapped as schedulers, trained models and both bridges meet here:
a policy trained in simulation drives the live system through the same two calls.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@runtime_checkable
class Scheduler(Protocol):
    """Anything that picks an action from an observation and an action mask: ``reset()`` before
    an episode, then ``act(observation, action_mask)`` -> an action index. A scheduler whose
    ``observation_mode`` is ``"graph"`` (the Spark heuristics) is asked ``act(state,
    schedulable)`` instead and answers a :class:`envs.spark_dag.Decision` or ``None``."""

    def reset(self) -> None: ...

    def act(self, observation: Any, action_mask: np.ndarray) -> Any: ...


class IncompleteEpisode(RuntimeError):
    """The episode ended (truncated) before the scheduler's own actions completed it: whatever
    the env filled in to finish it is not the scheduler's result."""


def run_episode(env: gym.Env, scheduler: Scheduler, seed: int | None = None,
                options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Play one episode with ``scheduler`` and return the final ``info`` dict (its
    ``complete`` says whether the scheduler finished it; see :func:`require_complete`)."""
    observation, info = env.reset(seed=seed, options=options)
    scheduler.reset()
    while True:
        mask = np.asarray(info["action_mask"], dtype=bool)
        action = scheduler.act(observation, mask)
        observation, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return info


def incomplete_reason(info: dict[str, Any]) -> str | None:
    """Why the episode of this final ``info`` is not the scheduler's own result (None when it
    is). Every env's final ``info`` carries ``complete``; a missing key is a bug, not a pass."""
    if info["complete"]:
        return None
    done = f", {info['jobs_done']} of {info['num_jobs']} jobs done" if "num_jobs" in info else ""
    return (f"truncated before the scheduler completed the episode "
            f"({info['invalid_actions']} invalid actions{done})")


def require_complete(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` itself when the scheduler completed the episode; else :class:`IncompleteEpisode`
    naming why."""
    reason = incomplete_reason(info)
    if reason is not None:
        raise IncompleteEpisode(reason)
    return info
