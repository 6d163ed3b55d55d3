"""Evaluation sweeps of :mod:`agents.sweep_tasks` on an engine: in this process or as Spark
tasks through :mod:`spark_integration.runner` (what ``train_agents.py --engine`` and
``benchmarks.offload --engine`` run)."""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Engine:
    """Where evaluation episodes run: ``local`` (this process) or ``spark`` on ``master``,
    ``batch`` seeds (offloading: instances) per task (default: 1 locally, else about 4 tasks
    per core of ``local[N]``, 16 tasks on a cluster)."""

    name: str = "local"
    master: str | None = None
    batch: int | None = None

    def __post_init__(self) -> None:
        from spark_integration.runner import ENGINES

        if self.name not in ENGINES:
            raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, got {self.name!r}")

    def batch_for(self, count: int) -> int:
        if self.batch:
            return self.batch
        if self.name == "local":
            return 1
        match = re.fullmatch(r"local\[(\d+)(,\d+)?\]", self.master or "")
        return max(1, math.ceil(count / (4 * int(match.group(1)) if match else 16)))


def run_sweep(task: str, payloads: list[dict], engine: Engine, label: str) -> list[dict]:
    """The rows of ``payloads`` run by :mod:`spark_integration.runner` (a progress bar when
    local; a task that fails every Spark attempt raises its
    :class:`~spark_integration.runner.RunnerError`)."""
    from rich.progress import Progress

    from spark_integration.runner import run_tasks

    if engine.name != "local":
        print(f"{label}: {len(payloads)} tasks on {engine.master}", file=sys.stderr)
        return run_tasks(task, payloads, "spark", engine.master).flat_rows()
    with Progress(transient=True) as bar:
        progress = bar.add_task(label, total=len(payloads))
        return run_tasks(task, payloads, progress=lambda done: bar.update(
            progress, completed=done)).flat_rows()


def episode_outcomes(env_id: str, models: dict[str, str], seeds: range, engine: Engine,
                     label: str) -> list:
    """:class:`agents.compare.Outcome` rows of every heuristic and model on each seed."""
    from agents.compare import Outcome
    from agents.sweep_tasks import model_payload

    size = engine.batch_for(len(seeds))
    files = model_payload(models)
    payloads = [{"env_id": env_id, "seeds": list(seeds[i:i + size]), "models": files}
                for i in range(0, len(seeds), size)]
    rows = run_sweep("agents.sweep_tasks:compare_episodes", payloads, engine, label)
    return [Outcome(row["reference"], row["objective"], row["plan_seconds"],
                    failures=row["failures"]) for row in rows]


def offload_outcomes(instances: list, models: dict[str, str], engine: Engine, label: str,
                     **limits: Any) -> list:
    """:class:`agents.offload.compare.InstanceOutcome` of each instance (CP-SAT optimum,
    heuristics, models; ``limits``: ``exact``, ``exact_time_limit_s``, ``joint_time_limit_s``)."""
    from agents.offload.compare import InstanceOutcome
    from agents.sweep_tasks import model_payload

    size = engine.batch_for(len(instances))
    files = model_payload(models)
    payloads = [{"instances": [inst.to_dict() for inst in instances[i:i + size]],
                 "models": files, **limits} for i in range(0, len(instances), size)]
    rows = run_sweep("agents.sweep_tasks:offload_instances", payloads, engine, label)
    return [InstanceOutcome(**row) for row in rows]
