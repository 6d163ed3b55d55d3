"""Name -> what drives a live run: a pipesched heuristic, a trained agent, or Spark itself."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.scheduler import Scheduler
from agents.spark_dag.policy import SHIPPED, validated_executors
from envs.spark_dag import ObservationLimits

SPARK_NATIVE = {"spark-fifo": False, "spark-fair": True}  # name -> one FAIR pool per job
#: the live bridge's ``agent`` per deployment, each trained in the live mode on a scale-1 trace
#: of that deployment: in ``local[N]`` the executors are threads of the driver's JVM and a node
#: on 2 executors runs ~1.4x faster than on 1; on a cluster of 1-core workers it does not
#: (0.94x), so the two want different parallelism limits; the multi-slot bed (2 workers x 2
#: one-core executors sharing a shaped link) has its own, trained on the bed's trace at E = 4
AGENTS = {"local": (SHIPPED["real"],),
          "cluster": (SHIPPED["real_cluster"], SHIPPED["real_bed"])}


def agent_path(master: str | None = None, executors: int | None = None) -> Path:
    """The shipped policy ``agent`` means on ``master`` (a URL or a benchmark label; None:
    local) with ``executors`` slots: the deployment's first policy validated for that count
    (None: the first)."""
    candidates = AGENTS["local" if master is None or master.startswith("local") else "cluster"]
    if executors is not None:
        for path in candidates:
            if executors in validated_executors(path):
                return path
    return candidates[0]


@dataclass
class Driver:
    """``scheduler`` is None for the Spark-native baselines."""

    name: str
    scheduler: Scheduler | None
    limits: ObservationLimits
    native_pools: bool = False


def agent_limits(model_path: str | Path) -> ObservationLimits:
    """The observation limits stored next to a trained agent (``<model>.json``)."""
    sidecar = Path(model_path).with_suffix(".json")
    if not sidecar.exists():
        raise FileNotFoundError(f"{sidecar}: missing; it holds the env kwargs (observation "
                                f"limits) the agent {model_path} was trained with")
    data: Any = json.loads(sidecar.read_text())
    for key in ("limits", "env_kwargs", "config"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    fields = {k: data[k] for k in ("max_jobs", "max_stages", "cap_share_multiples",
                                   "work_scale_s", "time_scale_s", "task_scale_s") if k in data}
    if "cap_share_multiples" in fields:
        fields["cap_share_multiples"] = tuple(fields["cap_share_multiples"])
    return ObservationLimits(**fields)


def make_driver(name: str, limits: ObservationLimits | None = None,
                executors: int | None = None, master: str | None = None) -> Driver:
    """``spark-fifo`` / ``spark-fair``, a name in ``heuristics.spark_dag.HEURISTICS``,
    ``agent`` (the shipped real-Spark graph policy for ``master``: :func:`agent_path`), a graph
    policy ``.json``
    (:mod:`agents.spark_dag.policy`) or a padded MaskablePPO ``.zip``. With ``executors`` given,
    a graph policy not validated for that cluster size is refused
    (``agents.spark_dag.policy.ShapeError``)."""
    from heuristics.spark_dag import HEURISTICS, make_heuristic

    if name in SPARK_NATIVE:
        return Driver(name, None, limits or ObservationLimits(), SPARK_NATIVE[name])
    if name in HEURISTICS:
        limits = limits or ObservationLimits()
        return Driver(name, make_heuristic(name), limits)
    path = agent_path(master, executors) if name == "agent" else Path(name)
    if path.suffix == ".json":
        from agents.spark_dag.policy import load_policy

        return Driver("agent" if name == "agent" else path.stem,
                      load_policy(path, executors=executors, allow_any_shape=executors is None),
                      limits or ObservationLimits())
    if path.suffix == ".zip":
        if not path.exists():
            raise FileNotFoundError(f"agent model {path} does not exist")
        from agents.scheduler import load_scheduler

        return Driver("agent" if name == "agent" else path.stem, load_scheduler(str(path)),
                      agent_limits(path))
    raise ValueError(f"unknown scheduler {name!r}: use spark-fifo, spark-fair, agent, a policy "
                     f".json, a .zip model or one of {sorted(HEURISTICS)}")
