"""Turn any Scheduler (a trained agent included) into an offloading plan for one instance."""

from __future__ import annotations

import gymnasium as gym

from agents.evaluate import require_complete, run_episode
from agents.scheduler import Scheduler, load_scheduler
from envs import PROBLEMS
from envs.offload import OffloadInstance, Plan


def plan_with_scheduler(scheduler: Scheduler, instance: OffloadInstance,
                        env_kwargs: dict | None = None) -> Plan:
    """Play ``scheduler`` through ``DnnOffload-v0`` on ``instance``; its decisions are the plan.
    A scheduler that does not place every job itself raises
    :class:`agents.evaluate.IncompleteEpisode` (the env's all-local fill-in is not its plan)."""
    kwargs = dict(env_kwargs or {})
    kwargs["max_jobs"] = max(kwargs.get("max_jobs", 6), instance.num_jobs)
    env = gym.make(PROBLEMS["offload"].env_id, **kwargs)
    info = run_episode(env.unwrapped, scheduler, options={"instance": instance})
    env.close()
    return Plan(tuple(require_complete(info)["plan"]))


def plan_with_model(model_path: str, instance: OffloadInstance) -> Plan:
    """Plan with a MaskablePPO model trained on ``DnnOffload-v0`` (its saved env shape)."""
    scheduler = load_scheduler(model_path)
    spaces = scheduler.model.observation_space["cut_features"].shape
    max_jobs, max_cuts = spaces[0], spaces[1]
    if instance.num_jobs > max_jobs:
        raise ValueError(f"model {model_path} was trained for at most {max_jobs} jobs; the "
                         f"instance has {instance.num_jobs}")
    return plan_with_scheduler(scheduler, instance, {"max_jobs": max_jobs, "max_cuts": max_cuts})
