"""Live-mode job sequences from a recorded real-Spark trace, as ``benchmarks.spark_real`` draws
its job streams.

A trace written by ``spark_integration.tracegen`` at several executor counts carries, next to
its task-level templates, the wall time of every DAG node run alone at each count (its
``calibration`` section). :func:`load_live_templates` pairs each query's template with those
measured times (:class:`~envs.spark_dag.live.NodeTiming` tables), and
:class:`LiveSequenceGenerator` draws streams of them for :class:`~envs.spark_dag.live.LiveSimulator`,
the simulator of what a live Spark run under ``spark_integration.DagExecutor`` does (nodes
admitted whole, processor sharing).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.spark_dag.live import NodeJob, NodeTiming
from envs.spark_dag.workload import WorkloadError, load_workload


def load_live_templates(path: str | Path) -> dict[str, NodeJob]:
    """Query name -> its template (arrival 0) with every node's measured wall time alone at
    each recorded executor count. A trace without a ``calibration`` section, or one that misses
    a node at some count, is refused with a one-line :class:`WorkloadError` naming the file."""
    path = Path(path)
    calibration = json.loads(path.read_text()).get("calibration")
    if not calibration:
        raise WorkloadError(f"{path}: no 'calibration' section (node wall times per executor "
                            f"count); record the trace with spark_integration.tracegen")
    if not all(str(level).isdigit() for level in calibration):
        raise WorkloadError(f"{path}: 'calibration' is not keyed by executor count (a trace "
                            f"recorded at one count); record it with --executor-counts")
    templates = {}
    for job in load_workload(path):
        query = job.name.rsplit("/", 1)[-1]
        timings = []
        for stage in job.stages:
            walls = {}
            for level, queries in calibration.items():
                entry = queries.get(query, {}).get(stage.name)
                if entry is None or "wall_s" not in entry:
                    raise WorkloadError(f"{path}: calibration[{level!r}][{query!r}] has no "
                                        f"{'wall_s of ' if entry is not None else ''}node "
                                        f"{stage.name!r}")
                walls[int(level)] = float(entry["wall_s"])
            timings.append(NodeTiming(walls_s=walls))
        templates[query] = NodeJob(query, 0.0, job, tuple(timings))
    return templates


def recorded_executors(templates: dict[str, NodeJob]) -> int:
    """The largest E whose counts ``1..E`` every node of ``templates`` was recorded at: the
    cluster size a trace's streams are played on (0 when some node lacks count 1)."""
    def contiguous(walls_s: dict[int, float]) -> int:
        count = 0
        while count + 1 in walls_s:
            count += 1
        return count

    return min(contiguous(timing.walls_s) for template in templates.values()
               for timing in template.timings)


@dataclass
class LiveSequenceGenerator:
    """``num_jobs`` jobs drawn uniformly from ``templates`` (named ``"<query>#<k>"``), the first
    at 0, then exponential gaps whose mean is the mean isolated job time (its nodes one after
    another on all ``num_executors``) over ``load``: ``benchmarks.spark_real``'s offered load.
    Every node must have a recorded time at each count in ``1..num_executors`` (ValueError
    naming the first that does not)."""

    templates: dict[str, NodeJob]
    num_jobs: int = 20
    load: float = 1.5
    num_executors: int = 2

    def __post_init__(self) -> None:
        if not self.templates:
            raise ValueError("LiveSequenceGenerator: no templates")
        if self.num_jobs < 1 or not (math.isfinite(self.load) and self.load > 0):
            raise ValueError(f"LiveSequenceGenerator: num_jobs must be >= 1 and load > 0, got "
                             f"{self.num_jobs}, {self.load}")
        for template in self.templates.values():
            template.check_counts(self.num_executors)
        self.queries = sorted(self.templates)

    @property
    def mean_gap_s(self) -> float:
        alone_s = [sum(t.wall_s(self.num_executors) for t in self.templates[q].timings)
                   for q in self.queries]
        return float(np.mean(alone_s)) / self.load

    def __call__(self, rng: np.random.Generator) -> list[NodeJob]:
        picks = rng.integers(len(self.queries), size=self.num_jobs)
        gaps_s = rng.exponential(self.mean_gap_s, self.num_jobs)
        gaps_s[0] = 0.0
        jobs = []
        for k, (pick, arrival_s) in enumerate(zip(picks.tolist(), np.cumsum(gaps_s),
                                                  strict=True)):
            template = self.templates[self.queries[pick]]
            name = f"{template.name}#{k}"
            arrival_s = round(float(arrival_s), 3)
            jobs.append(NodeJob(name, arrival_s, template.template.with_arrival(arrival_s,
                                                                                name=name),
                                template.timings))
        return jobs
