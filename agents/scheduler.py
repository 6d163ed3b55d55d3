"""Trained models as Schedulers: the MaskablePPO adapter and :func:`load_scheduler` (the
protocol itself is :class:`envs.scheduler.Scheduler`, re-exported here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.scheduler import Scheduler

__all__ = ["SB3Scheduler", "Scheduler", "load_scheduler"]


class SB3Scheduler:
    """Wraps a trained (Maskable)PPO model so it satisfies :class:`Scheduler`."""

    def __init__(self, model: Any, deterministic: bool = True) -> None:
        self.model = model
        self.deterministic = deterministic

    def reset(self) -> None:
        pass

    def act(self, observation: Any, action_mask: np.ndarray) -> int:
        action, _ = self.model.predict(
            observation, action_masks=np.asarray(action_mask, dtype=bool),
            deterministic=self.deterministic,
        )
        return int(action)


def load_scheduler(path: str, deterministic: bool = True, executors: int | None = None,
                   allow_any_shape: bool = False) -> Any:
    """Load a trained scheduler: a MaskablePPO ``.zip`` saved by :mod:`agents.algos.maskable_ppo`, or a
    Spark graph scoring policy ``.json`` (:mod:`agents.spark_dag.policy`; with ``executors`` given
    it refuses a cluster size it was not validated for unless ``allow_any_shape``).

    Sets torch to one CPU thread: a scheduler scores one observation at a time, and on a busy
    2-core machine two threads made each decision about 20x slower (100 ms against 5 ms).
    """
    if str(path).endswith(".json"):
        from agents.spark_dag.policy import load_policy

        return load_policy(path, executors=executors, allow_any_shape=allow_any_shape)
    import torch
    from sb3_contrib import MaskablePPO

    torch.set_num_threads(1)

    model = MaskablePPO.load(path, device="cpu")
    return SB3Scheduler(model, deterministic=deterministic)
