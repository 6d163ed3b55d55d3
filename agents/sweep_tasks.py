"""The task functions of :mod:`spark_integration.runner`: each takes a payload (plain data, model
files as bytes) and returns plain row dicts, so a Spark executor and the local engine compute
the same rows from the same payload.

- ``compare_episodes``: every heuristic and model of an env on a batch of seeded instances
  (``train_agents.py evaluate|compare``).
- ``offload_instances``: heuristics, models and the CP-SAT optimum on a batch of offloading
  instances (``compare`` on DnnOffload, ``benchmarks.offload``, ``benchmarks.runner``).
- ``offload_demonstrations``, ``dagger_states``: the offloading warm-up's expert
  demonstrations and DAgger labels (:func:`agents.algos.imitation.pretrain` with ``collect``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any


def model_payload(models: dict[str, str]) -> dict[str, dict]:
    """name -> ``{"suffix", "data"}``: the model files as bytes, for a payload (the suffix
    says the kind: ``.zip``, ``.json`` or ``.ranker.json``)."""
    from agents.model_check import model_kind

    return {name: {"suffix": model_kind(path), "data": Path(path).read_bytes()}
            for name, path in models.items()}


def materialise_models(models: dict[str, dict]) -> dict[str, str]:
    """Write each model's bytes once per content (named by its SHA-256) under the temporary
    directory; name -> path."""
    folder = Path(tempfile.gettempdir()) / "pipesched-models"
    folder.mkdir(exist_ok=True)
    paths = {}
    for name, model in models.items():
        path = folder / (hashlib.sha256(model["data"]).hexdigest() + model["suffix"])
        if not path.exists():
            partial = folder / f"{path.name}.{os.getpid()}.partial"
            partial.write_bytes(model["data"])
            partial.replace(path)
        paths[name] = str(path)
    return paths


@functools.lru_cache(maxsize=2)
def _contenders(env_id: str, models: tuple[tuple[str, str], ...]) -> tuple[dict, dict]:
    """Built once per Python worker and model set (Spark reuses its Python workers)."""
    from agents.compare import contenders

    return contenders(env_id, dict(models))


def compare_episodes(payload: dict[str, Any]) -> list[dict]:
    """``{"env_id", "seeds", "models"}`` -> one row per seed: ``seed``, ``reference`` (best
    heuristic), ``objective`` and ``plan_seconds`` per scheduler, and ``failures`` (name ->
    reason) of those that did not complete the instance (objective ``inf``)."""
    from agents.compare import run_outcomes

    paths = materialise_models(payload["models"])
    heuristics, agents = _contenders(payload["env_id"], tuple(sorted(paths.items())))
    agents = {name: agents[name] for name in payload["models"]}  # the payload's order
    outcomes = run_outcomes(heuristics, agents, payload["seeds"])
    return [{"seed": seed, "reference": o.reference, "objective": o.objective,
             "plan_seconds": o.plan_seconds, "failures": o.failures}
            for seed, o in zip(payload["seeds"], outcomes, strict=True)]


@functools.lru_cache(maxsize=2)
def _offload_agents(models: tuple[tuple[str, str], ...]) -> dict:
    import gymnasium as gym

    from agents.model_check import load_for_env
    from envs import PROBLEMS

    env_id = PROBLEMS["offload"].env_id
    space = gym.make(env_id).observation_space
    return {name: load_for_env(path, env_id, space, check_shapes=False)
            for name, path in models}


def offload_instances(payload: dict[str, Any]) -> list[dict]:
    """``{"instances": [OffloadInstance dicts], "models", "exact", "exact_time_limit_s",
    "joint_time_limit_s"}`` -> one row per instance with the fields of
    :class:`agents.offload.compare.InstanceOutcome`."""
    from agents.offload.compare import evaluate_instance
    from envs.offload import OffloadInstance

    paths = materialise_models(payload.get("models", {}))
    loaded = _offload_agents(tuple(paths.items()))
    rows = []
    for data in payload["instances"]:
        outcome = evaluate_instance(OffloadInstance.from_dict(data), loaded,
                                    exact=payload.get("exact", True),
                                    exact_time_limit_s=payload.get("exact_time_limit_s", 30.0),
                                    joint_time_limit_s=payload.get("joint_time_limit_s", 2.0))
        rows.append({"reference": outcome.reference, "reference_name": outcome.reference_name,
                     "objective": outcome.objective, "plan_seconds": outcome.plan_seconds,
                     "bandwidth_mbps": outcome.bandwidth_mbps, "num_jobs": outcome.num_jobs,
                     "proven_optimal": outcome.proven_optimal, "failures": outcome.failures})
    return rows


def offload_demonstrations(payload: dict[str, Any]) -> list[dict]:
    """``{"env_id", "env_kwargs", "expert", "seed", "instances"}`` -> one row whose
    ``transitions`` are the ``.npz`` bytes of :func:`agents.algos.imitation.offload_demonstrations`."""
    from agents.algos.imitation import arrays_to_bytes
    from agents.algos.imitation import offload_demonstrations as demonstrations
    from agents.config import import_object

    arrays = demonstrations(payload["env_id"], payload["env_kwargs"],
                            import_object(payload["expert"]), payload["instances"],
                            payload["seed"])
    return [{"transitions": arrays_to_bytes(arrays)}]


def dagger_states(payload: dict[str, Any]) -> list[dict]:
    """The same with ``"model"`` (the policy's saved .zip bytes): the states that policy visits
    labelled by the expert (:func:`agents.algos.imitation.dagger_states`)."""
    import io

    from sb3_contrib import MaskablePPO

    from agents.algos.imitation import arrays_to_bytes
    from agents.algos.imitation import dagger_states as states
    from agents.config import import_object

    model = MaskablePPO.load(io.BytesIO(payload["model"]), device="cpu")
    arrays = states(model, payload["env_id"], payload["env_kwargs"],
                    import_object(payload["expert"]), payload["instances"], payload["seed"])
    return [{"transitions": arrays_to_bytes(arrays)}]
