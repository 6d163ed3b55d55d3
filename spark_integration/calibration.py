"""Predicting live runs job by job: the same jobs, arrivals and scheduler, modelled two ways.

- :func:`predict_live`, the *executor model*: a thin call into the simulator's live mode
  (:class:`envs.spark_dag.live.LiveSimulator`, timing rules in :mod:`envs.spark_dag.live`),
  which admits nodes by the same rules as the :class:`DagExecutor`
  (:mod:`envs.spark_dag.admission`): a node launched at parallelism ``q`` counts ``q``
  executors as held from launch to end, and runs on what Spark's FAIR scheduler gives its pool
  (``minShare = q``): at least ``q`` slots, plus a fair share of the idle ones, up to its task
  count (the :class:`~envs.spark_dag.live.PartitionRule` the run used). Its progress rate on
  ``s`` slots is ``1 / (speed * wall at s)``, the wall times alone on ``s`` slots measured in
  the run's own session (:class:`NodeTimes`, :func:`calibrate_in_session`, which holds the
  other slots idle with :func:`slots_held`); ``contention`` is an extra slowdown per other
  node running. ``speed`` and ``contention`` (:class:`LiveModel`) are fitted to the node
  durations of one run (:func:`fit_live_model`) and then fixed for the held-out runs.
- :func:`simulate`, the SparkDagShop simulator the agent is trained in: task-level, each task
  holds one executor and executors return to the pool task by task, on traced templates
  calibrated to the isolated wall times at full parallelism.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluate import run_episode
from agents.scheduler import Scheduler
from envs.spark_dag import Job, ObservationLimits
from envs.spark_dag.live import (
    EXECUTOR_PARTITIONS,
    LiveSimulator,
    NodeJob,
    NodeTiming,
    PartitionRule,
    fair_slots,
)
from spark_integration.executor import NodeRecord, RunResult
from spark_integration.jobs import JobSpec


@dataclass
class NodeTimes:
    """Isolated node wall times: ``walls_s[query][node][slots]`` seconds, the node alone on
    that many task slots (the others held idle by :func:`slots_held`; median over the repeats
    of :func:`spark_integration.tracegen.time_nodes`)."""

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
        """The node's isolated wall times as the live mode's per-slot-count table."""
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


#: how long a ballast task of :func:`slots_held` sleeps unless cancelled first
BALLAST_HOLD_S = 3600.0


def _active_tasks(context: Any, group: str) -> int:
    """Running tasks of the Spark jobs in job group ``group``."""
    tracker = context.statusTracker()
    active = 0
    for job_id in tracker.getJobIdsForGroup(group):
        info = tracker.getJobInfo(job_id)
        for stage_id in info.stageIds if info is not None else ():
            stage = tracker.getStageInfo(stage_id)
            active += stage.numActiveTasks if stage is not None else 0
    return active


@contextmanager
def slots_held(spark: Any, slots: int, timeout_s: float = 60.0) -> Iterator[None]:
    """Hold ``slots`` task slots of ``spark`` with sleeping tasks (a ballast Spark job in a
    thread of its own, cancelled on exit), so that what runs meanwhile gets only the other
    slots: Spark never takes a slot back from a running task. Entered once every ballast task
    runs; a ballast that fails, is not running within ``timeout_s`` or ends before the exit
    is a RuntimeError."""
    if slots < 1:
        yield
        return
    from pyspark import InheritableThread

    context = spark.sparkContext
    group = f"ballast|{uuid.uuid4().hex[:8]}"
    ended: list[BaseException | None] = []

    def hold() -> None:
        context.setJobGroup(group, f"hold {slots} slot(s) idle for a timing",
                            interruptOnCancel=True)
        try:
            context.parallelize(range(slots), slots).foreach(
                lambda _: time.sleep(BALLAST_HOLD_S))
            ended.append(None)
        except Exception as error:  # deliberate: the cancel on exit ends it so; else re-raised
            ended.append(error)

    thread = InheritableThread(target=hold, daemon=True, name=f"pipesched-{group}")
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while (active := _active_tasks(context, group)) < slots:
            if ended:
                raise RuntimeError(f"the ballast holding {slots} slot(s) ended before it "
                                   f"held them: {ended[0]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the ballast holds {active} of {slots} slot(s) after "
                                   f"{timeout_s:g} s (fewer free slots than the session has?)")
            time.sleep(0.05)
        yield
        if ended:
            raise RuntimeError(f"the ballast holding {slots} slot(s) ended while a timing ran "
                               f"(it then had more slots): {ended[0]}")
    finally:
        context.cancelJobGroup(group)
        thread.join()


def calibrate_in_session(spark: Any, tables: dict[str, str], queries: Sequence[str],
                         repeats: int, work: Path, event_log_dir: Path, label: str,
                         executors: int, partition_level: int | None = None,
                         levels: Sequence[int] | None = None) -> tuple[NodeTimes, dict[str, Job]]:
    """Time every query alone, node after node, on each slot count of ``levels`` (default
    1..``executors``; the other slots held idle by :func:`slots_held`) in this session
    (started with event logging into ``event_log_dir``), and turn the session's event log into
    calibrated templates (all slots, median repeat). ``partition_level`` fixes every node's
    partitioning (the fixed partition rule); else a node timed on ``s`` slots has the
    partitions of parallelism ``s``."""
    from spark_integration.nodes import NodeRunner
    from spark_integration.queries import QUERIES
    from spark_integration.tracegen import calibrated_jobs, time_nodes

    levels = sorted(set(levels or range(1, executors + 1)) | {executors})
    dags = [QUERIES[q] for q in queries]
    runner = NodeRunner(spark, tables)
    timed: dict[tuple[str, int], dict[int, dict[str, float]]] = {}
    for repeat in range(repeats):
        for level in levels:
            with slots_held(spark, executors - level):
                part = time_nodes(runner, dags, [level], 1, work,
                                  partition_level=partition_level, first_repeat=repeat)
            for key, by_level in part.items():
                timed.setdefault(key, {}).update(by_level)
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
    (the JVM keeps warming up between the timing and the runs); ``contention`` is the extra
    slowdown each other running node causes beyond sharing the slots (shared driver, cores
    beyond the slots)."""

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
                 model: LiveModel = LiveModel(),
                 partitions: PartitionRule = EXECUTOR_PARTITIONS
                 ) -> dict[str, float]:
    """Job name -> predicted JCT of a DagExecutor run of ``specs`` under ``scheduler``: the
    simulator's live mode (:class:`envs.spark_dag.live.LiveSimulator`) on the queries'
    templates with each node's isolated wall times per slot count from ``times``.
    ``partitions`` must be the run's rule: ``PartitionRule(fixed=P)`` for
    ``DagExecutor(fixed_partitions=P)``, else ``PartitionRule(tasks_per_executor=k)`` (the
    executor's default, ``k = 2``)."""
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
    simulator = LiveSimulator(num_executors, limits, model.speed, model.contention, partitions)
    return simulator.run(jobs, scheduler).jct_s


def _launched(result: RunResult) -> list[tuple[str, str, NodeRecord]]:
    """``(job, query, node)`` of every node of ``result`` that launched and ended (failed
    ones too: they held slots); a node without its partition count is a ValueError."""
    nodes = [(job.name, job.query, node) for job in result.jobs for node in job.nodes
             if node.launch_s is not None and node.end_s is not None]
    for name, _, node in nodes:
        if node.partitions < 1:
            raise ValueError(f"{result.scheduler} run, job {name} node {node.name}: no "
                             f"partition count recorded (partitions={node.partitions})")
    return nodes


def node_samples(result: RunResult, times: NodeTimes) -> list[np.ndarray]:
    """Per finished node of a live run that took time: rows ``(seconds, alone progress rate
    on its slots, other nodes running)``, one per interval between consecutive launches and
    ends of the run's nodes within its life. Its slots in an interval are those the live
    mode's rule (:func:`envs.spark_dag.live.fair_slots`) gives it beside the nodes measured
    running then, with their recorded parallelism (floor) and partitions."""
    nodes = _launched(result)
    total = result.total_executors
    cuts = sorted({t for _, _, node in nodes for t in (node.launch_s, node.end_s)})
    rows: dict[int, list[tuple[float, float, int]]] = {}
    for start, end in zip(cuts, cuts[1:], strict=False):
        running = [(query, node) for _, query, node in nodes
                   if node.launch_s <= start and node.end_s >= end]
        slots = fair_slots([node.parallelism for _, node in running],
                           [min(node.partitions, total) for _, node in running], total)
        for (query, node), share in zip(running, slots, strict=True):
            if not node.error:
                rows.setdefault(id(node), []).append(
                    (end - start, times.timing(query, node.name).rate(share), len(running) - 1))
    return [np.array(rows[id(node)], dtype=float) for _, _, node in nodes if id(node) in rows]


def fit_live_model(results: Sequence[RunResult], times: NodeTimes,
                   paces: Sequence[float] | None = None,
                   speeds: Sequence[float] = tuple(np.round(np.arange(0.5, 2.001, 0.02), 2)),
                   contentions: Sequence[float] = tuple(np.round(np.arange(0.0, 1.501, 0.05),
                                                                 2)),
                   ) -> LiveModel:
    """The :class:`LiveModel` under which every finished node of ``results``, run over its
    measured interval on the slots of :func:`node_samples`, makes progress closest to 1 (least
    mean absolute log of ``sum(seconds * rate / (speed * pace * (1 + contention * others)))``;
    ``pace`` = the run's machine pace, see :func:`pace_of`, default 1). Nothing of a job's JCT
    enters the fit."""
    paces = [1.0] * len(results) if paces is None else list(paces)
    if not results:
        raise ValueError("fit_live_model: no run to fit on")
    samples = [(rows, pace) for result, pace in zip(results, paces, strict=True)
               for rows in node_samples(result, times)]
    if not samples:
        raise ValueError(f"fit_live_model: no finished node in the runs "
                         f"{[r.scheduler for r in results]} to fit speed and contention on")
    # progress each node makes at speed 1, per contention
    progress = {c: np.array([np.sum(rows[:, 0] * rows[:, 1] / (1.0 + c * rows[:, 2])) / pace
                             for rows, pace in samples]) for c in contentions}
    best, best_error = LiveModel(), math.inf
    for speed in speeds:
        for contention in contentions:
            error = float(np.mean(np.abs(np.log(progress[contention] / speed))))
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
