"""``DagExecutor``: a pipesched Scheduler drives a live SparkSession, one DAG node at a time.

At every event (a job arrives, a node finishes or fails) the executor builds the SparkDagShop
:class:`~envs.spark_dag.state.ClusterState` from live Spark state, encodes it with
:mod:`envs.spark_dag.observation` (the same functions the simulator env uses), asks the
Scheduler, and launches the chosen node, until the Scheduler waits; the admission rules are
:mod:`envs.spark_dag.admission`, which the simulator's live mode (:mod:`envs.spark_dag.live`)
replays. Live mapping:

- a SparkDagShop *job* is one query instance (:class:`~spark_integration.jobs.JobSpec`), a
  *stage* is one node of its DAG (stage id = node index);
- a decision ``(job, stage, cap)`` launches the node with ``q = min(free, cap - held by job)``
  executors: it runs on its own ``pyspark.InheritableThread`` in a FAIR pool declared with
  ``minShare = q`` and with ``q * tasks_per_executor`` shuffle/file partitions, so it can
  neither be starved below nor spread far above ``q``; the executor admits nodes only while
  the executors they hold fit the cluster;
- a launched node cannot be re-parallelised, so all its tasks count as started (none waiting);
  progress (finished tasks, remaining work) comes from ``SparkContext.statusTracker()`` for the
  node's job group, scaled onto the per-query *templates* (calibrated workload jobs from
  ``spark_integration.tracegen``) that give each node's task count and work before it runs;
- the cluster's executor count is re-read at every event, so a lost worker shrinks it.

``scheduler=None`` gives the Spark-native baselines: every node is submitted as soon as its
parents are done (every job at its arrival), with the full partition count, in one pool per job
(FAIR) or Spark's FIFO queue, so Spark's own scheduler makes every choice.

Partition sizing: by default a node gets ``parallelism * tasks_per_executor`` partitions (the
baselines: all executors'). With ``fixed_partitions=P`` every node of every driver gets ``P``
partitions, so drivers differ only in what they launch when and in which pool (the fair
benchmark's one rule); a pipesched node then may spread beyond its pool's ``minShare`` onto
idle executors, as Spark's FAIR scheduler lets any pool do.

Faults: a node whose Spark job fails (a Spark or Py4J error,
:func:`spark_integration.errors.is_spark_failure`) is re-run up to ``max_retries`` times, then
its query is reported failed with the Spark error while the other queries go on; a failed query
has no JCT, and :class:`RunResult` counts it (``jobs_failed``) beside the mean JCT of the
finished ones. Any other exception in a node (a bug in the code, not a Spark failure) cancels
the run and is re-raised by :meth:`DagExecutor.run`, as is Ctrl-C (``KeyboardInterrupt``): every
running node's job tag is cancelled and the node threads are joined first.

Templates: a scheduler observes each query's calibrated template, so a run with a scheduler
refuses a query without one; the Spark-native baselines observe nothing and use the DAG's
structure alone (:func:`structure_template`).
"""

from __future__ import annotations

import math
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyspark import InheritableThread
from pyspark.sql import SparkSession

from agents.scheduler import Scheduler
from envs.spark_dag import ClusterState, Job, ObservationLimits, Stage
from envs.spark_dag.admission import AdmissionJob, Choice, admit, live_state, next_decision
from envs.spark_dag.observation import Decision
from spark_integration.errors import SPARK_ERRORS, error_line, is_spark_failure
from spark_integration.jobs import JobSpec
from spark_integration.nodes import NodeRunner
from spark_integration.session import POOL_PREFIX, declared_ladder, task_slots


class FailedNode(RuntimeError):
    """A node failed after its retries; carries the Spark error text."""


@dataclass
class NodeRecord:
    name: str
    parents: list[str]
    launch_s: float | None = None
    end_s: float | None = None
    parallelism: int = 0
    partitions: int = 0
    pool: str = ""
    attempts: int = 0
    error: str = ""
    tag: str = ""

    @property
    def duration_s(self) -> float | None:
        if self.launch_s is None or self.end_s is None:
            return None
        return self.end_s - self.launch_s


@dataclass
class JobRecord:
    name: str
    query: str
    arrival_s: float
    nodes: list[NodeRecord]
    start_s: float | None = None
    end_s: float | None = None
    status: str = "pending"  # pending -> running -> done | failed | cancelled
    error: str = ""
    output: str = ""  # the sink node's parquet, when the executor keeps outputs

    @property
    def jct_s(self) -> float | None:
        return None if self.end_s is None or self.status != "done" else self.end_s - self.arrival_s

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "query": self.query, "arrival_s": self.arrival_s,
                "start_s": self.start_s, "end_s": self.end_s, "jct_s": self.jct_s,
                "status": self.status, "error": self.error, "output": self.output,
                "nodes": [{"name": n.name, "parents": n.parents, "launch_s": n.launch_s,
                           "end_s": n.end_s, "duration_s": n.duration_s,
                           "parallelism": n.parallelism, "partitions": n.partitions,
                           "pool": n.pool, "attempts": n.attempts, "error": n.error,
                           "tag": n.tag} for n in self.nodes]}


def latency_summary_ms(latencies_s: list[float]) -> dict[str, float]:
    """Median, 99th percentile and maximum of the scheduler's decision times, in ms."""
    if not latencies_s:
        return {"count": 0}
    ms = np.asarray(latencies_s) * 1000.0
    return {"count": int(ms.size), "median": float(np.median(ms)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}


@dataclass
class ShadowTally:
    """At each decision the scheduler was asked for, what ``shadow`` (another scheduler, asked
    the same state, its answer never acted on) would have done: how often it named the same
    stage, and the same stage with the same executor limit (a wait matches only a wait)."""

    shadow: str
    decisions: int = 0
    same_stage: int = 0
    same_decision: int = 0

    def add(self, ours: Decision | None, theirs: Decision | None) -> None:
        def stage(d: Decision | None) -> tuple[int, int] | None:
            return None if d is None else (d.job_index, d.stage_id)

        self.decisions += 1
        if stage(ours) == stage(theirs):
            self.same_stage += 1
            if ours is None or theirs is None or ours.parallelism == theirs.parallelism:
                self.same_decision += 1


@dataclass
class RunResult:
    """What happened in one live run (times in seconds from the run's start)."""

    scheduler: str
    jobs: list[JobRecord]
    total_executors: int
    wall_s: float
    decisions: int = 0
    invalid_actions: int = 0
    executor_counts: list[int] = field(default_factory=list)
    decision_latency_s: list[float] = field(default_factory=list)
    shadow: ShadowTally | None = None

    @property
    def finished(self) -> list[JobRecord]:
        return [j for j in self.jobs if j.status == "done"]

    @property
    def failed(self) -> list[JobRecord]:
        return [j for j in self.jobs if j.status == "failed"]

    @property
    def mean_jct_s(self) -> float:
        """Mean JCT over the finished jobs only: a run with failed jobs (``failed``) is not
        comparable with one without on this figure alone."""
        done = self.finished
        return float(np.mean([j.jct_s for j in done])) if done else math.nan

    @property
    def makespan_s(self) -> float:
        ends = [j.end_s for j in self.jobs if j.end_s is not None]
        return float(max(ends)) if ends else math.nan

    def to_json(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler, "total_executors": self.total_executors,
                "wall_s": self.wall_s, "mean_jct_s": self.mean_jct_s,
                "jobs_finished": len(self.finished), "jobs_failed": len(self.failed),
                "makespan_s": self.makespan_s, "decisions": self.decisions,
                "invalid_actions": self.invalid_actions,
                "failed_jobs": [j.name for j in self.failed],
                "executor_counts": sorted(set(self.executor_counts)),
                "decision_latency_ms": latency_summary_ms(self.decision_latency_s),
                **({"shadow": asdict(self.shadow)} if self.shadow else {}),
                "jobs": [j.to_json() for j in self.jobs]}

    def to_workload(self) -> list[Job]:
        """The run as workload jobs the simulator can replay: each finished node becomes a stage
        of ``parallelism`` equal tasks lasting its measured wall time, so replaying it with the
        same caps, no delays and no network limit reproduces the measured node durations."""
        jobs = []
        for record in self.jobs:
            if record.status != "done":
                continue
            index = {n.name: i for i, n in enumerate(record.nodes)}
            stages = [Stage(id=i, parents=tuple(index[p] for p in n.parents),
                            num_tasks=max(1, n.parallelism),
                            compute_s=max(n.duration_s or 0.0, 1e-3), name=n.name)
                      for i, n in enumerate(record.nodes)]
            jobs.append(Job(record.name, record.arrival_s, stages))
        return jobs


def structure_template(spec: JobSpec, tasks: int) -> Job:
    """The DAG of ``spec`` as a template of ``tasks`` one-second tasks per node: the admission
    bookkeeping of the Spark-native baselines, which observe no work (never a scheduler's)."""
    index = {n.name: i for i, n in enumerate(spec.dag.nodes)}
    return Job(spec.dag.name, 0.0, [Stage(id=i, parents=tuple(index[p] for p in n.parents),
                                          num_tasks=tasks, compute_s=1.0, name=n.name)
                                    for i, n in enumerate(spec.dag.nodes)])


class LiveJob(AdmissionJob):
    """A job during a live run: the admission bookkeeping (:class:`AdmissionJob`, on the DAG's
    parents) plus its Spark side: spec, record and the job group of each launched node."""

    def __init__(self, spec: JobSpec, record: JobRecord, template: Job) -> None:
        position = {node.name: i for i, node in enumerate(spec.dag.nodes)}
        super().__init__(record.name, record.arrival_s, template,
                         [[position[p] for p in node.parents] for node in spec.dag.nodes])
        self.spec = spec
        self.record = record
        self.nodes = spec.dag.nodes
        self.groups: dict[int, str] = {}


@dataclass
class _Run:
    """The state of one :meth:`DagExecutor.run`, shared by its steps (times from ``start``)."""

    run_id: str
    start: float
    templates: dict[str, Job]
    records: dict[str, JobRecord]
    arrivals: list[JobSpec]
    free_pools: dict[int, list[str]]
    live: list[LiveJob] = field(default_factory=list)
    threads: dict[str, threading.Thread] = field(default_factory=dict)
    events: queue.Queue = field(default_factory=queue.Queue)
    last_total: int = 0
    decisions: int = 0
    invalid: int = 0
    executor_counts: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    shadow: ShadowTally | None = None

    def now(self) -> float:
        return time.monotonic() - self.start


class DagExecutor:
    """Run a stream of query jobs on a live SparkSession under a pipesched Scheduler.

    Arguments: ``spark`` (a session started with ``scheduler.mode=FAIR`` and the pool ladder of
    :func:`spark_integration.session.build_session`, except for the FIFO baseline),
    ``scheduler`` (any :class:`agents.scheduler.Scheduler`, or ``None`` for Spark-native
    submission), ``tables`` (TPC-H table -> parquet path), ``work_dir`` (node outputs),
    ``limits`` (the observation padding the scheduler was built for), ``templates`` (query name
    -> calibrated workload :class:`~envs.spark_dag.Job`), ``total_executors`` (task slots;
    read from Spark when omitted), ``tasks_per_executor`` (partitions per executor held),
    ``max_retries`` (re-runs of a failed node), ``native_pools`` (baseline only: one FAIR pool
    per job, else Spark's default pool), ``progress`` (print a line per finished job),
    ``keep_outputs`` (keep node results under ``work_dir``; ``JobRecord.output`` names the
    answer), ``fixed_partitions`` (every node's partition count; module docstring),
    ``node_hook(spec, node_name, attempt)`` (called in the node thread before each attempt;
    fault injection in tests), ``shadow`` (a scheduler asked the same state at every decision,
    never acted on: :class:`ShadowTally` in ``RunResult.shadow``).
    """

    def __init__(self, spark: SparkSession, scheduler: Scheduler | None, *,
                 tables: dict[str, str], work_dir: str | Path,
                 limits: ObservationLimits | None = None,
                 templates: dict[str, Job] | None = None, total_executors: int | None = None,
                 tasks_per_executor: int = 2, max_retries: int = 1, native_pools: bool = True,
                 poll_interval_s: float = 0.5, progress: bool = True,
                 name: str | None = None, keep_outputs: bool = False,
                 fixed_partitions: int | None = None,
                 node_hook: Callable[[JobSpec, str, int], None] | None = None,
                 shadow: Scheduler | None = None) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if fixed_partitions is not None and fixed_partitions < 1:
            raise ValueError(f"fixed_partitions must be >= 1, got {fixed_partitions}")
        self.fixed_partitions = fixed_partitions
        self.spark = spark
        self.sc = spark.sparkContext
        self.scheduler = scheduler
        self.limits = limits or ObservationLimits()
        self.templates = dict(templates or {})
        self.fixed_executors = total_executors
        self.tasks_per_executor = tasks_per_executor
        self.max_retries = max_retries
        self.native_pools = native_pools
        self.poll_interval_s = poll_interval_s
        self.progress = progress
        self.name = name or ("spark-native" if scheduler is None else type(scheduler).__name__)
        self.node_hook = node_hook
        self.shadow = shadow
        self.keep_outputs = keep_outputs
        self.work_dir = Path(work_dir)
        self.runner = NodeRunner(spark, tables, tasks_per_executor)
        self.ladder: dict[int, list[str]] = {}
        if scheduler is not None:
            self.ladder = declared_ladder(self.sc, "DagExecutor with a scheduler")

    # ----------------------------------------------------------------- spark-side facts
    def total_executors(self) -> int:
        """Task slots now: fixed, ``local[N]``'s N, or the live executors' cores."""
        return task_slots(self.sc, self.fixed_executors)

    def _node_progress(self, group: str) -> float:
        """Completed fraction of the tasks Spark has created so far for a node's job group."""
        tracker = self.sc.statusTracker()
        total = completed = 0
        for job_id in tracker.getJobIdsForGroup(group):
            info = tracker.getJobInfo(job_id)
            if info is None:
                continue
            for stage_id in info.stageIds:
                stage = tracker.getStageInfo(stage_id)
                if stage is not None:
                    total += stage.numTasks
                    completed += stage.numCompletedTasks
        return completed / total if total else 0.0

    # ----------------------------------------------------------------- state for the policy
    def _state(self, now_s: float, live: list[LiveJob], pending: bool, total: int,
               held: int) -> ClusterState:
        return live_state(now_s, live, pending, total, held,
                          lambda job, i: self._node_progress(job.groups[i]))

    # ----------------------------------------------------------------- node threads
    def _run_node(self, job: LiveJob, index: int, parallelism: int, pool: str | None,
                  events: queue.Queue, run_id: str) -> None:
        """The node thread: always reports to ``events``, with None (done), the Spark error's
        text (failed after its retries) or the exception of a bug."""
        try:
            events.put((job, index, self._attempts(job, index, parallelism, pool, run_id)))
        except Exception as bug:  # deliberate: a bug, not a Spark failure; run() re-raises it
            events.put((job, index, bug))

    def _attempts(self, job: LiveJob, index: int, parallelism: int, pool: str | None,
                  run_id: str) -> str | None:
        """Run one node, re-running it after a Spark failure up to ``max_retries`` times; the
        last Spark error's text, or None when an attempt succeeded."""
        node, record = job.nodes[index], job.record.nodes[index]
        parent_paths = {p: str(self.work_dir / run_id / job.record.name / p)
                        for p in node.parents}
        out = self.work_dir / run_id / job.record.name / node.name
        self.sc.setLocalProperty("spark.scheduler.pool", pool)
        self.sc.setJobGroup(job.groups[index], f"{job.record.name} {job.spec.dag.name}/"
                                               f"{node.name}", interruptOnCancel=True)
        self.sc.addJobTag(record.tag)
        error: str | None = None
        for attempt in range(1, self.max_retries + 2):
            record.attempts = attempt
            try:
                if self.node_hook is not None:
                    self.node_hook(job.spec, node.name, attempt)
                self.runner.run(node, parent_paths, out, parallelism, record.partitions)
                return None
            except SPARK_ERRORS as caught:
                if not is_spark_failure(caught):
                    raise
                error = error_line(caught)
                if self._cancelled.is_set():
                    break
        return error

    # ----------------------------------------------------------------- main loop
    def run(self, specs: Sequence[JobSpec]) -> RunResult:
        """Run ``specs`` (arrivals relative to now) to completion; returns the records."""
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate job names in {names}")
        run = self._start_run(specs)
        try:
            self._event_loop(run)
        except BaseException:  # deliberate: cleanup (Ctrl-C, a node's bug), then re-raised
            self._cancel(run.records, run.threads)
            raise
        return RunResult(self.name, [run.records[s.name] for s in specs],
                         self.total_executors(), run.now(), run.decisions, run.invalid,
                         run.executor_counts, run.latencies, run.shadow)

    def _start_run(self, specs: Sequence[JobSpec]) -> _Run:
        """Check the templates, reset the scheduler and start the clock of a new run."""
        templates = self._templates(specs)
        run_id = uuid.uuid4().hex[:8]
        self._cancelled = threading.Event()
        order = sorted(specs, key=lambda s: s.arrival_s)
        records = {s.name: JobRecord(s.name, s.dag.name, s.arrival_s,
                                     [NodeRecord(n.name, list(n.parents)) for n in s.dag.nodes])
                   for s in order}
        free_pools = {level: list(pools) for level, pools in self.ladder.items()}
        if self.scheduler is not None:
            self.scheduler.reset()
        run = _Run(run_id, time.monotonic(), templates, records, list(order), free_pools)
        if self.shadow is not None:
            self.shadow.reset()
            run.shadow = ShadowTally(getattr(self.shadow, "name", type(self.shadow).__name__))
        run.last_total = self.total_executors()
        return run

    def _event_loop(self, run: _Run) -> None:
        """Until every job has ended: admit arrivals, decide after any change, then wait for
        node events (or the next arrival)."""
        changed = True
        while run.arrivals or run.live:
            changed |= self._admit_arrivals(run)
            changed |= self._executors_changed(run)
            if changed:
                self._decide(run)
            changed = self._apply_node_events(run, self._wait_s(run))

    def _admit_arrivals(self, run: _Run) -> bool:
        """Make the jobs whose arrival time has come live; whether any did."""
        arrived = False
        while run.arrivals and run.arrivals[0].arrival_s <= run.now():
            spec = run.arrivals.pop(0)
            run.live.append(LiveJob(spec, run.records[spec.name], run.templates[spec.dag.name]))
            arrived = True
        return arrived

    def _executors_changed(self, run: _Run) -> bool:
        """Whether a cluster (not ``local``) gained or lost executors since the last look."""
        if self.sc.master.startswith("local"):
            return False
        total = self.total_executors()
        changed = total != run.last_total
        run.last_total = total
        return changed

    def _wait_s(self, run: _Run) -> float:
        """How long to wait for a node event: the poll interval, or less if a job arrives."""
        timeout = self.poll_interval_s
        if run.arrivals:
            timeout = max(0.0, min(timeout, run.arrivals[0].arrival_s - run.now()))
        return timeout

    def _apply_node_events(self, run: _Run, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a node thread's report, then apply every queued one;
        whether any node ended. A node's bug is re-raised here, in the driver thread."""
        ended = False
        try:
            job, index, error = run.events.get(timeout=timeout_s)
            while True:
                if isinstance(error, BaseException):
                    raise error
                self._finish(run, job, index, error)
                ended = True
                job, index, error = run.events.get_nowait()
        except queue.Empty:
            pass
        return ended

    # ----------------------------------------------------------------- decisions
    def _decide(self, run: _Run) -> None:
        """Launch nodes until the scheduler waits; Spark-native, launch every ready node."""
        while True:
            total = self.total_executors()
            run.executor_counts.append(total)
            active = [j for j in run.live if j.record.status in ("running", "pending")]
            if self.scheduler is None:
                for job in active:
                    for index in job.ready():
                        self._launch(run, job, index, total)
                return
            choice, executors = self._ask_scheduler(self.scheduler, run, active, total)
            if choice.decision is None:
                return
            self._launch(run, active[choice.decision.job_index], choice.decision.stage_id,
                         executors)

    def _ask_scheduler(self, scheduler: Scheduler, run: _Run, active: list[LiveJob],
                       total: int) -> tuple[Choice, int]:
        """One admission query on the live state; counts the query, its validity and time."""
        pending = bool(run.arrivals) or any(j.running for j in run.live)
        held = sum(j.held for j in run.live)
        state = self._state(run.now(), active, pending, total, held)
        # asked first: admit() sets the chosen job's limit, which the shadow must not see
        shadow = (next_decision(self.shadow, state, self.limits) if self.shadow is not None
                  else None)
        choice, executors = admit(scheduler, state, active, self.limits)
        if shadow is not None and choice.asked:
            run.shadow.add(choice.decision, shadow.decision)
        run.decisions += choice.asked
        run.invalid += choice.invalid
        if choice.asked:
            run.latencies.append(choice.act_s)
        return choice, executors

    # ----------------------------------------------------------------- launching and ending nodes
    def _launch(self, run: _Run, job: LiveJob, index: int, parallelism: int) -> None:
        """Record the node's pool, parallelism and partitions, then start its thread."""
        record = job.record.nodes[index]
        parallelism, pool = self._pool_for(run, job, parallelism)
        record.pool = pool or "default"
        record.parallelism = parallelism
        record.partitions = (self.fixed_partitions
                             or self.runner.partitions_for(parallelism))
        record.tag = f"pipesched-{run.run_id}-{job.record.name.replace('#', '-')}-{index}"
        record.launch_s = run.now()
        job.groups[index] = f"pipesched|{run.run_id}|{job.record.name}|{record.name}"
        job.launched.add(index)
        job.running[index] = parallelism
        if job.record.start_s is None:
            job.record.start_s = record.launch_s
            job.record.status = "running"
        thread = InheritableThread(target=self._run_node, daemon=True,
                                   name=f"pipesched-node-{record.tag}",
                                   args=(job, index, parallelism, pool, run.events, run.run_id))
        run.threads[record.tag] = thread
        thread.start()

    def _pool_for(self, run: _Run, job: LiveJob, parallelism: int) -> tuple[int, str | None]:
        """The node's parallelism and FAIR pool: under a scheduler, the largest free ladder
        level within ``parallelism``; Spark-native, the job's own pool (or the default)."""
        if self.scheduler is not None:
            levels = [k for k in run.free_pools if k <= parallelism and run.free_pools[k]]
            if levels:  # else (more executors than the ladder was declared for): default
                level = max(levels)
                return level, run.free_pools[level].pop()
            return parallelism, None
        if self.native_pools:
            return parallelism, f"job_{job.record.name}"
        return parallelism, None

    def _finish(self, run: _Run, job: LiveJob, index: int, error: str | None) -> None:
        """A node thread ended: free its pool, record the outcome, retire the job if over."""
        record = job.record.nodes[index]
        record.end_s = run.now()
        held = job.running.pop(index)
        if record.pool.startswith(POOL_PREFIX):
            run.free_pools[held].append(record.pool)
        run.threads.pop(record.tag).join()
        if error is not None:
            self._node_failed(run, job, record, error)
        else:
            self._node_done(run, job, index, record)
        if job.record.status != "running" and not job.running:
            run.live.remove(job)
            if not self.keep_outputs:
                shutil.rmtree(self.work_dir / run.run_id / job.record.name, ignore_errors=True)

    def _node_failed(self, run: _Run, job: LiveJob, record: NodeRecord, error: str) -> None:
        """The first failed node fails its query and cancels the query's other nodes."""
        record.error = error
        if job.record.status != "running":
            return
        job.record.status = "failed"
        job.record.error = f"node {record.name}: {error}"
        job.record.end_s = record.end_s
        self._print(f"[{run.now():7.1f}s] {job.record.name} FAILED after "
                    f"{record.attempts} attempt(s): {error}")
        for other in job.running:  # the query is lost: stop its other nodes
            self.sc.cancelJobsWithTag(job.record.nodes[other].tag)

    def _node_done(self, run: _Run, job: LiveJob, index: int, record: NodeRecord) -> None:
        """Mark the node done; its job is done when every node is."""
        job.done.add(index)
        if len(job.done) != len(job.nodes):
            return
        job.record.status = "done"
        job.record.end_s = record.end_s
        if self.keep_outputs:
            job.record.output = str(self.work_dir / run.run_id / job.record.name
                                    / job.spec.dag.sink.name)
        ended = sum(r.end_s is not None for r in run.records.values())
        self._print(f"[{run.now():7.1f}s] {job.record.name} done, JCT "
                    f"{job.record.jct_s:.1f} s ({ended}/{len(run.records)} jobs)")

    def _templates(self, specs: Sequence[JobSpec]) -> dict[str, Job]:
        """Query -> the template its jobs are observed through; a scheduler gets only the
        calibrated ones (a query without one is refused before anything runs)."""
        out = {}
        for spec in specs:
            template = self.templates.get(spec.dag.name)
            if template is None and self.scheduler is not None:
                raise ValueError(f"no calibrated template for query {spec.dag.name} (known: "
                                 f"{sorted(self.templates) or 'none'}); give a trace of it "
                                 f"(spark_integration.tracegen) or calibrate in the session")
            template = template or structure_template(spec, self.tasks_per_executor)
            if len(template.stages) != len(spec.dag.nodes):
                raise ValueError(f"template for {spec.dag.name} has {len(template.stages)} "
                                 f"stages, the DAG has {len(spec.dag.nodes)} nodes")
            out[spec.dag.name] = template
        return out

    def _cancel(self, records: dict[str, JobRecord], threads: dict[str, threading.Thread]) -> None:
        self._cancelled.set()
        for tag in list(threads):
            self.sc.cancelJobsWithTag(tag)
        for thread in list(threads.values()):
            if thread.ident is not None:   # Ctrl-C inside start(): that node never ran
                thread.join(timeout=30)
        for record in records.values():
            if record.status in ("pending", "running"):
                record.status = "cancelled"
        self._print(f"cancelled {len(threads)} running node(s)")

    def _print(self, line: str) -> None:
        if self.progress:
            print(line, flush=True)
