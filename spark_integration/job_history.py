"""What earlier runs of a query cost, keyed by its signature: the work estimate of a user's job.

A :class:`JobHistory` keeps, per query signature (:attr:`spark_integration.plan_dag.PlanDag.
signature` for SQL, ``callable:<name>`` for a callable job), the stages Spark ran in each
finished run: task count and executor run time (Spark's own ``executorRunTime``, the task time
summed over the stage's tasks), in submission order. The estimate of a job's stages is, in
this order of preference:

1. *history*: the median over earlier runs of the same signature, stage by stage when the runs
   ran as many stages as the plan estimates, else their median total spread over the estimated
   stages in proportion to the stages' estimated input bytes;
2. *plan statistics*: each stage's estimated input bytes times the seconds per byte of every
   run recorded so far (of any signature);
3. *prior*: with no run recorded at all, :data:`PRIOR_S_PER_GIB` executor-seconds per GiB of
   input (a visible warning says so).

The file (JSON) is rewritten after every recorded run, so a long-lived scheduler keeps what it
learnt; runs older than the last :data:`KEEP_RUNS` of a signature are dropped.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from spark_integration.plan_dag import PlanDag

log = logging.getLogger(__name__)

PRIOR_S_PER_GIB = 20.0  # executor-seconds per GiB of parquet input; only before any run
KEEP_RUNS = 20
_GIB = float(1 << 30)


@dataclass(frozen=True)
class StageRun:
    """One stage Spark ran: its task count and summed task run time."""

    num_tasks: int
    executor_s: float


@dataclass(frozen=True)
class QueryRun:
    """One finished run of a query: its stages in submission order and the plan's input bytes."""

    stages: tuple[StageRun, ...]
    input_bytes: int

    @property
    def executor_s(self) -> float:
        return float(sum(s.executor_s for s in self.stages))


class JobHistory:
    """Runs per signature, in memory and (with ``path``) in a JSON file. Thread-safe."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._runs: dict[str, list[QueryRun]] = {}
        self._lock = threading.Lock()
        self._warned_prior = False
        if self.path is not None and self.path.exists():
            self._runs = _load(self.path)

    def copy(self) -> JobHistory:
        """An in-memory copy: what it learns is not written back."""
        other = JobHistory()
        with self._lock:
            other._runs = {k: list(v) for k, v in self._runs.items()}
        return other

    def __len__(self) -> int:
        return sum(len(runs) for runs in self._runs.values())

    def runs(self, signature: str) -> list[QueryRun]:
        with self._lock:
            return list(self._runs.get(signature, []))

    def add(self, signature: str, run: QueryRun) -> None:
        with self._lock:
            runs = self._runs.setdefault(signature, [])
            runs.append(run)
            del runs[:-KEEP_RUNS]
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps({k: [asdict(r) for r in v]
                                           for k, v in self._runs.items()}))
                tmp.replace(self.path)

    def seconds_per_byte(self) -> float | None:
        """Executor-seconds per input byte over every recorded run (None before any)."""
        with self._lock:
            runs = [r for rs in self._runs.values() for r in rs if r.input_bytes > 0]
        if not runs:
            return None
        return sum(r.executor_s for r in runs) / sum(r.input_bytes for r in runs)

    def stage_work_s(self, dag: PlanDag) -> tuple[list[float], str]:
        """Estimated executor-seconds of each stage of ``dag`` and where the estimate came from
        (``history``, ``plan statistics`` or ``prior``; module docstring)."""
        runs = self.runs(dag.signature)
        weights = np.array([max(s.input_bytes, 1) for s in dag.stages], dtype=float)
        weights /= weights.sum()
        if runs:
            same_shape = [r for r in runs if len(r.stages) == len(dag.stages)]
            if same_shape:
                per_stage = np.median([[s.executor_s for s in r.stages] for r in same_shape],
                                      axis=0)
                return [max(float(w), 1e-3) for w in per_stage], "history"
            total = float(np.median([r.executor_s for r in runs]))
            return [max(total * w, 1e-3) for w in weights], "history"
        rate = self.seconds_per_byte()
        source = "plan statistics"
        if rate is None:
            rate, source = PRIOR_S_PER_GIB / _GIB, "prior"
            if not self._warned_prior:
                self._warned_prior = True
                log.warning("no run recorded yet: work of %s estimated at %.0f s per GiB of "
                            "input until one is", dag.signature[:12], PRIOR_S_PER_GIB)
        return [max(s.input_bytes * rate, 1e-3) for s in dag.stages], source

    def job_work_s(self, signature: str) -> tuple[list[float], str]:
        """Stages of a job with no plan (a callable): its recorded stages' median executor
        seconds (``history``), else one stage of the median job of the whole history
        (``other jobs``), else one one-second stage (``prior``), with a warning."""
        runs = self.runs(signature)
        if runs:
            longest = max(len(r.stages) for r in runs)
            shaped = [r for r in runs if len(r.stages) == longest]
            return [max(float(w), 1e-3) for w in np.median(
                [[s.executor_s for s in r.stages] for r in shaped], axis=0)], "history"
        with self._lock:
            totals = [r.executor_s for rs in self._runs.values() for r in rs]
        if totals:
            log.warning("%s has no recorded run: estimated as the median job so far", signature)
            return [float(np.median(totals))], "other jobs"
        log.warning("%s has no recorded run and the history is empty: estimated at 1 s",
                    signature)
        return [1.0], "prior"


def _load(path: Path) -> dict[str, list[QueryRun]]:
    try:
        data = json.loads(path.read_text())
        return {signature: [QueryRun(tuple(StageRun(**s) for s in r["stages"]),
                                     int(r["input_bytes"])) for r in runs]
                for signature, runs in data.items()}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a job history ({error})") from None
