"""Load a trained scheduler for an env, refusing files that cannot drive it (one-line errors)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from envs import PROBLEMS, problem_for

RANKER = ".ranker.json"


class ModelError(ValueError):
    """A model file that is missing, unreadable or made for another env."""


def model_kind(path: str | Path) -> str:
    """A model file's kind by its name: ``.ranker.json`` (a planner agent), ``.json`` (a Spark
    graph policy) or its suffix (``.zip``: MaskablePPO)."""
    path = Path(path)
    return RANKER if path.name.endswith(RANKER) else path.suffix


def check_model_file(path: str | Path, env_id: str) -> None:
    """Cheap checks before anything heavy starts: the file exists and has the right kind."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model not found: {path}")
    if path.suffix != ".json":
        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path}: not a model .zip saved by train_agents.py train "
                             f"(nor a policy or ranker .json)")
        return
    kind = model_kind(path)
    runs_on = [p.env_id for p in PROBLEMS.values() if model_kind(p.agent) == kind]
    if env_id not in runs_on:
        what = "ranker" if kind == RANKER else "Spark graph policy"
        raise ModelError(f"{path} is a {what} file; it runs on {', '.join(runs_on)}, not "
                         f"{env_id}")


def observation_keys(space: Any) -> dict[str, tuple]:
    return {key: tuple(sub.shape or ()) for key, sub in getattr(space, "spaces", {}).items()}


def load_for_env(path: str | Path, env_id: str, env_space: Any | None = None,
                 check_shapes: bool = True) -> Any:
    """The scheduler in ``path``; a ``.zip`` must observe what ``env_space`` (the env's
    observation space; default: that of ``env_id`` with its default arguments) holds: the same
    keys, and with ``check_shapes`` the same shapes."""
    from agents.scheduler import load_scheduler

    check_model_file(path, env_id)
    if model_kind(path) == RANKER:  # a planner agent; its loader checks the file
        return problem_for(env_id).load("agent_loader")(path)
    try:
        scheduler = load_scheduler(str(path))
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
        raise ModelError(f"{path}: cannot be loaded ({error})") from None
    model = getattr(scheduler, "model", None)
    if model is None:
        return scheduler
    if env_space is None:
        import gymnasium as gym

        import envs  # noqa: F401  (registers the ids)

        env_space = gym.make(env_id).observation_space
    expected, found = observation_keys(env_space), observation_keys(model.observation_space)
    if set(expected) != set(found):
        raise ModelError(f"{path} was trained for another env (it observes "
                         f"{', '.join(sorted(found))}); {env_id} gives "
                         f"{', '.join(sorted(expected))}")
    if check_shapes:
        wrong = [k for k in expected if expected[k] != found[k]]
        if wrong:
            key = wrong[0]
            raise ModelError(f"{path} expects observation '{key}' of shape {found[key]}, "
                             f"{env_id} with this config gives {expected[key]} (set env_kwargs "
                             f"with --config)")
    return scheduler
