"""The job-sequence spec the reference-simulator drivers read (``decima_driver.py``,
``sss_driver.py``), checked before a reference simulator is loaded.

Standard library only (the drivers import it before anything else). A run's ``scheduler`` is
``fair`` or ``fifo`` (the reference's own rules, :data:`SCHEDULERS`), ``policy:PATH`` (a
pipesched policy file) or ``heuristic:NAME`` (a pipesched heuristic); anything else is
refused here as unknown. Whether ``PATH`` loads and ``NAME`` exists is checked by
``benchmarks/reference_adapter.py``, also before the reference is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEDULERS = ("fair", "fifo")
PREFIXES = ("policy:", "heuristic:")
FIELDS = ("executors", "moving_delay_ms", "warmup_ms", "tpch_dir", "runs")
MEAN_JCT_OVER = "finished jobs (jobs_done of jobs_total)"
KNOWN = "fair, fifo, policy:PATH or heuristic:NAME"


class SpecError(ValueError):
    """A spec file a driver cannot run as asked."""


def check_scheduler(name: Any, where: str) -> None:
    if name in SCHEDULERS:
        return
    if isinstance(name, str) and any(name.startswith(p) and len(name) > len(p)
                                     for p in PREFIXES):
        return
    raise SpecError(f"{where}: unknown scheduler {name!r} (use {KNOWN})")


def load_spec(path: str | Path) -> dict[str, Any]:
    """The spec at ``path`` with every run's ``scheduler`` checked; :class:`SpecError` names
    the file, the field and the value of the first problem."""
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise SpecError(f"{path}: cannot read the spec ({error})") from None
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: expected a JSON object, got {type(spec).__name__}")
    missing = [field for field in FIELDS if field not in spec]
    if missing:
        raise SpecError(f"{path}: missing field {missing[0]!r}")
    if not isinstance(spec["runs"], list):
        raise SpecError(f"{path}: runs must be a list, got {type(spec['runs']).__name__}")
    for index, run in enumerate(spec["runs"]):
        if not isinstance(run, dict) or not {"scheduler", "seed", "jobs"} <= set(run):
            raise SpecError(f"{path}: runs[{index}] needs scheduler, seed and jobs")
        check_scheduler(run["scheduler"], f"{path}: runs[{index}].scheduler")
    return spec


def run_result(run: dict[str, Any], mean_jct_s: float | None, jobs_done: int, cpu_s: float,
               decisions: int) -> dict[str, Any]:
    """One run's output: the scheduler as given, mean JCT over the finished jobs only
    (``None`` when none finished), saying so, with how many of the sequence's jobs finished,
    the episode's process CPU seconds and its number of decisions."""
    return {"scheduler": run["scheduler"], "seed": run["seed"], "mean_jct_s": mean_jct_s,
            "mean_jct_over": MEAN_JCT_OVER, "jobs_done": jobs_done,
            "jobs_total": len(run["jobs"]), "cpu_s": cpu_s, "decisions": decisions}
