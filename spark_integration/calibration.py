"""Predicting live runs job by job: the same jobs, arrivals and scheduler, modelled two ways.

- :func:`predict_live`, the *executor model*: a thin call into the simulator's live mode
  (:class:`envs.spark_dag.live.LiveSimulator`, timing rules in :mod:`envs.spark_dag.live`),
  which admits nodes by the same rules as the :class:`DagExecutor`
  (:mod:`envs.spark_dag.admission`): a node launched at parallelism ``q`` holds ``q``
  executors from launch to end (driver-side phase included, as the executor's admission
  control counts it) and needs its isolated wall time at ``q`` (:class:`NodeTimes`, measured
  node after node in the same session as the run) times ``speed``; running nodes share the
  machine, each progressing at ``1 / (1 + contention * (others running))`` of full speed.
  ``speed`` and ``contention`` (:class:`LiveModel`) are fitted to the node durations of one
  run (:func:`fit_live_model`) and then fixed for the held-out runs.
- :func:`simulate`, the SparkDagShop simulator the agent is trained in: task-level, each task
  holds one executor and executors return to the pool task by task, on traced templates
  calibrated to the isolated wall times at full parallelism.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluate import run_episode
from agents.scheduler import Scheduler
from envs.spark_dag import Job, ObservationLimits
from envs.spark_dag.live import LiveSimulator, NodeJob, NodeTiming
from spark_integration.executor import RunResult
from spark_integration.jobs import JobSpec


@dataclass
class NodeTimes:
    """Isolated node wall times: ``walls_s[query][node][parallelism]`` seconds (median over
    the repeats of :func:`spark_integration.tracegen.time_nodes`)."""

    walls_s: dict[str, dict[str, dict[int, float]]]

    @classmethod
    def from_timings(cls, timed: dict[tuple[str, int], dict[int, dict[str, float]]]
                     ) -> NodeTimes:
        samples: dict[str, dict[str, dict[int, list[float]]]] = {}
        for (query, _), by_level in timed.items():
            for level, nodes in by_level.items():
                for node, wall in nodes.items():
                    samples.setdefault(query, {}).setdefault(node, {}).setdefault(
                        int(level), []).append(wall)
        return cls({q: {n: {lv: float(np.median(w)) for lv, w in levels.items()}
                        for n, levels in nodes.items()} for q, nodes in samples.items()})

    def timing(self, query: str, node: str) -> NodeTiming:
        """The node's isolated wall times as the live mode's per-parallelism table."""
        try:
            return NodeTiming(walls_s=self.walls_s[query][node])
        except KeyError:
            raise KeyError(f"no isolated timing for node {query}/{node}") from None

    def wall_s(self, query: str, node: str, parallelism: int) -> float:
        """The node's time at ``parallelism``; a parallelism it was not timed at is a
        KeyError naming it (no other level's time stands in)."""
        walls = self.timing(query, node).walls_s
        if parallelism not in walls:
            raise KeyError(f"no isolated timing for node {query}/{node} at parallelism "
                           f"{parallelism} (timed at {sorted(walls)})")
        return walls[parallelism]

    def job_s(self, query: str, parallelism: int) -> float:
        """A query's isolated time, node after node at ``parallelism``."""
        return sum(self.wall_s(query, node, parallelism) for node in self.walls_s[query])

    def to_json(self) -> dict[str, Any]:
        return {q: {n: {str(lv): w for lv, w in levels.items()} for n, levels in nodes.items()}
                for q, nodes in self.walls_s.items()}


#: the event log :func:`calibrate_in_session` reads: one plain file per application
EVENT_LOG_CONF = {"spark.eventLog.compress": "false", "spark.eventLog.rolling.enabled": "false"}


def calibrate_in_session(spark: Any, tables: dict[str, str], queries: Sequence[str],
                         repeats: int, work: Path, event_log_dir: Path, label: str,
                         executors: int, partition_level: int | None = None,
                         levels: Sequence[int] | None = None) -> tuple[NodeTimes, dict[str, Job]]:
    """Time every query alone, node after node, at each parallelism of ``levels`` (default
    1..``executors``) in this session (started with event logging into ``event_log_dir``), and
    turn the session's event log into calibrated templates (full parallelism, median repeat).
    ``partition_level`` fixes every node's partitioning (the fixed partition rule)."""
    from spark_integration.nodes import NodeRunner
    from spark_integration.queries import QUERIES
    from spark_integration.tracegen import calibrated_jobs, time_nodes

    levels = sorted(set(levels or range(1, executors + 1)) | {executors})
    dags = [QUERIES[q] for q in queries]
    timed = time_nodes(NodeRunner(spark, tables), dags, levels, repeats, work,
                       partition_level=partition_level)
    app_id = spark.sparkContext.applicationId
    logs = [p for p in Path(event_log_dir).iterdir() if app_id in p.name]
    if not logs:
        raise FileNotFoundError(f"no event log of {app_id} in {event_log_dir}")
    walls = {key: by_level[executors] for key, by_level in timed.items()}
    jobs, _ = calibrated_jobs(logs[0], dags, walls, repeats, executors, label)
    templates = {job.name.rsplit("/", 1)[-1]: job for job in jobs}
    return NodeTimes.from_timings(timed), templates


@dataclass(frozen=True)
class LiveModel:
    """Free parameters of :func:`predict_live`: ``speed`` multiplies every isolated node time
    (the JVM keeps warming up between the timing and the runs); ``contention`` is the slowdown
    each other running node causes (shared cores, shared driver)."""

    speed: float = 1.0
    contention: float = 0.0


def pace_of(times: NodeTimes, probe_walls: dict[str, dict[str, float]], parallelism: int
            ) -> float:
    """How slow the machine is now relative to the calibration timing: the probe queries'
    wall time just measured (``query -> node -> seconds`` at ``parallelism``) over their
    isolated time in ``times``. Multiplies ``speed`` for the run that follows the probe."""
    now = sum(sum(nodes.values()) for nodes in probe_walls.values())
    then = sum(times.job_s(query, parallelism) for query in probe_walls)
    if not then > 0:
        raise ValueError(f"pace_of: the probe queries {sorted(probe_walls)} have no isolated "
                         f"time at parallelism {parallelism} to compare with")
    return now / then


def template_of(spec: JobSpec, templates: dict[str, Job]) -> Job:
    """The calibrated template of ``spec``'s query; a query without one is a ValueError naming
    it (the scheduler would otherwise observe made-up work)."""
    template = templates.get(spec.dag.name)
    if template is None:
        raise ValueError(f"no calibrated template for query {spec.dag.name} (known: "
                         f"{sorted(templates) or 'none'})")
    return template


def predict_live(specs: Sequence[JobSpec], times: NodeTimes, templates: dict[str, Job],
                 scheduler: Scheduler, limits: ObservationLimits, num_executors: int,
                 model: LiveModel = LiveModel()) -> dict[str, float]:
    """Job name -> predicted JCT of a DagExecutor run of ``specs`` under ``scheduler``: the
    simulator's live mode (:class:`envs.spark_dag.live.LiveSimulator`) on the queries'
    templates with each node's isolated wall times from ``times``."""
    jobs = []
    for spec in specs:
        template = template_of(spec, templates)
        position = {node.name: i for i, node in enumerate(spec.dag.nodes)}
        if template.parent_positions() != [sorted(position[p] for p in node.parents)
                                           for node in spec.dag.nodes]:
            raise ValueError(f"template {template.name!r} does not have the DAG of query "
                             f"{spec.dag.name} (one stage per node, same parents)")
        jobs.append(NodeJob(spec.name, spec.arrival_s, template,
                            tuple(times.timing(spec.dag.name, node.name)
                                  for node in spec.dag.nodes)))
    simulator = LiveSimulator(num_executors, limits, model.speed, model.contention)
    return simulator.run(jobs, scheduler).jct_s


def node_samples(result: RunResult, times: NodeTimes) -> np.ndarray:
    """Per finished node of a live run: ``(measured s, isolated s at its parallelism, mean
    number of other nodes running during it)``."""
    nodes = [(job.query, node) for job in result.jobs for node in job.nodes
             if node.duration_s is not None and not node.error]
    samples = []
    for query, node in nodes:
        others = sum(max(0.0, min(node.end_s, other.end_s) - max(node.launch_s, other.launch_s))
                     for _, other in nodes if other is not node)
        duration = max(node.duration_s, 1e-3)
        samples.append((duration, times.wall_s(query, node.name, node.parallelism),
                        others / duration))
    return np.array(samples, dtype=float).reshape(-1, 3)


def fit_live_model(results: Sequence[RunResult], times: NodeTimes,
                   paces: Sequence[float] | None = None,
                   speeds: Sequence[float] = tuple(np.round(np.arange(0.5, 2.001, 0.02), 2)),
                   contentions: Sequence[float] = tuple(np.round(np.arange(0.0, 1.501, 0.05),
                                                                 2)),
                   ) -> LiveModel:
    """The :class:`LiveModel` whose node durations ``speed * pace * isolated * (1 +
    contention * others)`` best match the measured durations of every node of ``results``
    (least mean absolute log ratio; ``others`` = mean number of other nodes running alongside;
    ``pace`` = the run's machine pace, see :func:`pace_of`, default 1)."""
    paces = [1.0] * len(results) if paces is None else list(paces)
    if not results:
        raise ValueError("fit_live_model: no run to fit on")
    samples = np.concatenate([node_samples(r, times) * np.array([1.0, pace, 1.0])
                              for r, pace in zip(results, paces, strict=True)])
    if not len(samples):
        raise ValueError(f"fit_live_model: no finished node in the runs "
                         f"{[r.scheduler for r in results]} to fit speed and contention on")
    measured, isolated, others = samples.T
    best, best_error = LiveModel(), math.inf
    for speed in speeds:
        for contention in contentions:
            predicted = speed * isolated * (1.0 + contention * others)
            error = float(np.mean(np.abs(np.log(predicted / measured))))
            if error < best_error:
                best, best_error = LiveModel(float(speed), float(contention)), error
    return best


def workload_for(specs: Sequence[JobSpec], templates: dict[str, Job]) -> list[Job]:
    """The simulator's view of a live stream: each job is its query's traced template."""
    jobs = []
    for spec in specs:
        template = template_of(spec, templates)
        jobs.append(Job(spec.name, spec.arrival_s, template.stages))
    return jobs


def simulate(jobs: Sequence[Job], scheduler: Scheduler, num_executors: int,
             limits: ObservationLimits) -> dict[str, float]:
    """Job name -> JCT in the SparkDagShop simulator with ``scheduler`` on ``num_executors``.

    The live cluster has no separate network to contend for and its executors need no
    per-job warm-up, so network capacity is unlimited (= E) and both delays are 0. A graph
    scheduler (``observation_mode = "graph"``, the heuristics) gets the env in that mode."""
    from envs.spark_dag.env import SparkDagShopEnv

    env = SparkDagShopEnv(num_executors=num_executors, network_capacity=float(num_executors),
                          moving_delay_s=0.0, warmup_s=0.0, max_jobs=limits.max_jobs,
                          max_stages=limits.max_stages,
                          cap_share_multiples=list(limits.cap_share_multiples),
                          observation_mode=getattr(scheduler, "observation_mode", "padded"))
    run_episode(env, scheduler, options={"instance": list(jobs)})
    sim = env.sim
    return {job.name: float(end - job.arrival_s)
            for job, end in zip(sim.jobs, sim.job_completion_s, strict=True)}


def compare(result: RunResult, predicted: dict[str, float]) -> list[dict[str, Any]]:
    """Per finished job: measured and predicted JCT and the relative error; a finished job
    without a prediction is a KeyError naming it."""
    rows = []
    for job in result.finished:
        sim = predicted.get(job.name)
        if sim is None:
            raise KeyError(f"no predicted JCT for job {job.name} of the {result.scheduler} run")
        rows.append({"job": job.name, "measured_jct_s": job.jct_s, "predicted_jct_s": sim,
                     "rel_error": abs(sim - job.jct_s) / job.jct_s})
    return rows


def summarize(rows: Sequence[dict[str, Any]], tolerance: float = 0.25) -> dict[str, float]:
    """Error statistics of ``rows``; all NaN (``jobs`` 0) when there is none."""
    if not rows:
        return {"jobs": 0, **dict.fromkeys(("median_rel_error", "p90_rel_error",
                                            "max_rel_error", "share_within_25pct"), math.nan)}
    errors = np.array([r["rel_error"] for r in rows])
    return {"jobs": len(rows), "median_rel_error": float(np.median(errors)),
            "p90_rel_error": float(np.percentile(errors, 90)),
            "max_rel_error": float(np.max(errors)),
            "share_within_25pct": float(np.mean(errors <= tolerance))}
