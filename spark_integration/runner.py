"""One runner for evaluation sweeps, benchmark cells and rollout collection, in this process or
on Spark.

    result = run_tasks("agents.sweep_tasks:compare_episodes", payloads,
                       engine="spark", master="spark://10.213.0.1:7077")
    result.rows        # one list of row dicts per payload, in payload order

A *payload* is a batch of episodes: plain data (dicts, lists, str, numbers, bool, None and
``bytes`` for model files), never a live object; it travels as JSON (``bytes`` base64-encoded)
and the rows come back the same way, so the local engine and every Spark executor run exactly
the same function on exactly the same input. ``fn_name`` is ``"module:function"`` inside this
project; the function takes the payload and returns a list of JSON-serialisable rows.

``engine="local"`` runs the payloads one after another in this process. ``engine="spark"``
makes one Spark task per payload on ``master`` (``local[N]`` becomes ``local[N,F]`` so that
local mode retries too; the session is kept for the process's later sweeps): a failed task is
retried by Spark up to ``max_failures`` attempts; each task's report records the attempt that
produced its rows, retried tasks are listed in ``RunResult.retried`` (and printed), and a
task that fails every attempt stops the run with a :class:`RunnerError` naming it: nothing
is dropped silently.
"""

from __future__ import annotations

import atexit
import base64
import importlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

ENGINES = ("local", "spark")
PROJECT_PACKAGES = ("agents", "envs", "heuristics", "spark_integration", "benchmarks", "tests")
DEFAULT_MAX_FAILURES = 4


class RunnerError(RuntimeError):
    """A task failed every attempt, or the run could not start; the message is one line."""


@dataclass
class TaskReport:
    index: int
    attempt: int      # 0 for a first try
    seconds: float    # the task function's own time
    host: str
    pid: int


@dataclass
class RunResult:
    rows: list[list[dict]]
    reports: list[TaskReport]
    engine: str
    master: str | None
    wall_s: float
    retried: list[TaskReport] = field(default_factory=list)

    def flat_rows(self) -> list[dict]:
        return [row for task_rows in self.rows for row in task_rows]


def _to_plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise TypeError(f"a payload holds plain data only, not {type(value).__name__}")


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return base64.b64decode(value["__bytes__"])
        return {k: _from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    return value


def encode(value: Any) -> str:
    """JSON text of plain data, ``bytes`` as base64 (floats round-trip exactly)."""
    return json.dumps(_to_plain(value), allow_nan=True)


def decode(text: str) -> Any:
    return _from_plain(json.loads(text))


def resolve_task(fn_name: str) -> Callable[[dict], list[dict]]:
    """The function named ``"package.module:function"`` (a module of this project)."""
    module_name, _, function = fn_name.partition(":")
    if not function or module_name.split(".")[0] not in PROJECT_PACKAGES:
        raise RunnerError(f"task {fn_name!r}: expected 'module:function' in one of "
                          f"{', '.join(PROJECT_PACKAGES)}")
    try:
        return getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as error:
        raise RunnerError(f"task {fn_name!r}: {error}") from None


def run_encoded(fn_name: str, index: int, text: str) -> tuple[int, str]:
    """Run one task from its JSON payload; ``(index, JSON of rows and report)``. This is what
    a Spark executor calls (and the local engine, the same way)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    attempt = context.attemptNumber() if context is not None else 0
    started = time.perf_counter()
    rows = resolve_task(fn_name)(decode(text))
    report = {"attempt": attempt, "seconds": time.perf_counter() - started,
              "host": socket.gethostname(), "pid": os.getpid()}
    return index, encode({"rows": rows, "report": report})


def spark_master_with_retries(master: str, max_failures: int) -> str:
    """``local[N]`` -> ``local[N,F]`` (local mode retries a task only when told so)."""
    match = re.fullmatch(r"local\[(\d+|\*)\]", master)
    return f"local[{match.group(1)},{max_failures}]" if match else master


def _collect_local(fn_name: str, encoded: list[str],
                   progress: Callable[[int], None] | None) -> list[tuple[int, str]]:
    results = []
    for index, text in enumerate(encoded):
        results.append(run_encoded(fn_name, index, text))
        if progress is not None:
            progress(index + 1)
    return results


_SESSION: dict[str, Any] = {}  # the runner's own session: {"master": ..., "spark": ...}


def close() -> None:
    """Stop the session the runner started (also done at exit)."""
    from spark_integration.session import stop_session

    if _SESSION:
        stop_session(_SESSION.pop("spark"))
        _SESSION.clear()


def session_for(master: str, max_failures: int = DEFAULT_MAX_FAILURES) -> Any:
    """The runner's SparkSession on ``master``: started on first use and kept for the next
    sweeps of this process (one JVM start, not one per sweep); another master replaces it.
    Each task's libraries get one thread (a task per core: BLAS threads would oversubscribe)."""
    from pyspark import SparkContext

    from spark_integration.session import build_session

    if _SESSION.get("master") == (master, max_failures):
        return _SESSION["spark"]
    close()
    if SparkContext._active_spark_context is not None:  # one SparkContext per process
        raise RunnerError("a SparkSession not started by the runner is running in this "
                          "process; pass it as run_tasks(..., spark=session)")
    if "PYSPARK_PYTHON" not in os.environ:  # executors run this interpreter unless told
        os.environ["PYSPARK_PYTHON"] = sys.executable
    threads = {f"spark.executorEnv.{name}": "1" for name in
               ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    spark = build_session(spark_master_with_retries(master, max_failures),
                          app_name="pipesched-sweep", scheduler_mode="FIFO", lean_jvm=True,
                          conf={"spark.task.maxFailures": str(max_failures),
                                "spark.python.worker.reuse": "true", **threads})
    if not _SESSION:
        atexit.register(close)
    _SESSION.update(master=(master, max_failures), spark=spark)
    return spark


def _collect_spark(fn_name: str, encoded: list[str], master: str, max_failures: int,
                   spark: Any) -> list[tuple[int, str]]:
    from spark_integration.errors import SPARK_ERRORS, is_spark_failure

    chosen = "PYSPARK_PYTHON" in os.environ
    spark = spark if spark is not None else session_for(master, max_failures)
    context = spark.sparkContext
    if not chosen:  # a session started without PYSPARK_PYTHON would run a bare python3
        context.pythonExec = sys.executable
    context.setJobDescription(f"pipesched sweep: {len(encoded)} tasks of {fn_name}")
    try:
        rdd = context.parallelize(list(enumerate(encoded)), numSlices=max(1, len(encoded)))
        return rdd.map(lambda item: run_encoded(fn_name, item[0], item[1])).collect()
    except SPARK_ERRORS as error:  # a task that failed every attempt aborts the Spark job
        if not is_spark_failure(error):
            raise
        lines = [line for line in str(error).splitlines() if line.strip()]
        failed = next((line for line in lines if "Task" in line and "failed" in line), lines[0]
                      if lines else type(error).__name__)
        cause = next((line for line in reversed(lines) if "Error" in line or "Exception" in line),
                     "")
        raise RunnerError(f"{fn_name}: {failed.strip()} {cause.strip()}".strip()) from None


def run_tasks(fn_name: str, payloads: Sequence[dict], engine: str = "local",
              master: str | None = None, *, max_failures: int = DEFAULT_MAX_FAILURES,
              progress: Callable[[int], None] | None = None, spark: Any = None,
              quiet: bool = False) -> RunResult:
    """Run ``fn_name`` on every payload; rows in payload order. ``engine="spark"`` needs
    ``master`` (the runner's session on it, see :func:`session_for`) or a running session
    as ``spark``; ``progress`` (local engine) is called with the number of finished tasks."""
    if engine not in ENGINES:
        raise RunnerError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "spark" and master is None and spark is None:
        raise RunnerError("--engine spark needs --master URL (e.g. local[2], spark://HOST:7077)")
    resolve_task(fn_name)  # a wrong name fails here, before any JVM starts
    encoded = [encode(payload) for payload in payloads]
    started = time.perf_counter()
    if engine == "local":
        results = _collect_local(fn_name, encoded, progress)
    else:
        results = _collect_spark(fn_name, encoded, master or "", max_failures, spark)
    wall_s = time.perf_counter() - started
    decoded = {index: decode(text) for index, text in results}
    missing = sorted(set(range(len(encoded))) - set(decoded))
    if missing:
        raise RunnerError(f"{fn_name}: no result for tasks {missing}")
    reports = [TaskReport(index, **decoded[index]["report"]) for index in range(len(encoded))]
    result = RunResult([decoded[index]["rows"] for index in range(len(encoded))], reports,
                       engine, master if spark is None else spark.sparkContext.master, wall_s,
                       [report for report in reports if report.attempt > 0])
    if result.retried and not quiet:
        print(f"{fn_name}: {len(result.retried)} task(s) succeeded only after a retry: " +
              ", ".join(f"task {r.index} on attempt {r.attempt + 1}" for r in result.retried))
    return result
