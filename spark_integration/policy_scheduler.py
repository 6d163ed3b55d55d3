"""``PolicyScheduler``: a pipesched policy schedules a user's own Spark jobs on a shared session.

A *job* is any SQL statement or any callable ``f(spark)`` that runs DataFrame actions; nothing
is rewritten or materialised on its behalf. The scheduler decides **when each job starts** and
**which FAIR pool it runs in** (the pool's ``minShare`` is the executor limit the policy chose),
and moves a running job to another pool when the policy changes its limit::

    sched = PolicyScheduler(spark, "sjf")                    # any shipped policy or heuristic
    rows = sched.submit("SELECT ...", name="report").result()
    n = sched.submit(lambda s: s.table("events").count(), name="count").result()
    sched.close()

What the policy sees (the :class:`~envs.spark_dag.state.ClusterState` the simulator builds):

- before a SQL job starts, its stage DAG from the physical plan
  (:func:`spark_integration.plan_dag.plan_dag`: exchange boundaries, partitions, input bytes)
  and each stage's work from :class:`~spark_integration.job_history.JobHistory` (earlier runs
  of the same signature, else plan statistics); a callable has no plan before it runs: its
  DAG is the stages of its earlier runs (a chain), else one stage;
- while a job runs, Spark's progress of the job's group (status tracker and status store):
  the k-th stage Spark started is the k-th estimated stage in topological order, its completed
  tasks scale the stage's remaining work, and its *active tasks* are the executors the job
  holds; free executors are the task slots minus every active task of the application (jobs
  the scheduler does not manage included).

Decisions, and what Spark enforces of them (the simulator's action is ``(job, stage, limit)``):

- a decision on a job that has not started **starts it** in a pool of ``minShare`` = the
  largest declared level <= ``limit`` (enforced: admission is ours; Spark then gives the pool
  at least ``minShare`` slots when it has tasks, and FAIR shares above it);
- a decision on a started job **moves it** to the pool of the new limit: the job thread's live
  ``Properties`` are updated, so every Spark job the query submits afterwards (with adaptive
  execution, each query stage is its own Spark job) lands in the new pool; tasks already
  submitted stay where they are (Spark fixes a job's pool at submission);
- not enforceable without patching Spark: *which* stage of a started job runs next (Spark
  runs every stage whose inputs are ready), a hard upper bound on a job's executors (a FAIR
  pool may use idle slots beyond its ``minShare``), and pool weights or shares changed in
  place (declared when the SparkContext starts: the session must declare the pool ladder,
  :func:`spark_integration.session.build_session` with ``min_pools_per_level``).

The Spark-native drivers (``spark-fifo``: every job at once into Spark's default FIFO pool;
``spark-fair``: every job at once into its own pool) make no decision. A job that fails
(its future raises the Spark error) never stops the others; Ctrl-C or :meth:`close`
(``cancel=True``) cancels every running job group and joins the job threads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark import InheritableThread
from pyspark.sql import DataFrame, SparkSession

from agents.scheduler import Scheduler
from envs.spark_dag import ClusterState, Job, ObservationLimits, Stage
from envs.spark_dag.admission import AdmissionJob, admit, live_state
from spark_integration.errors import error_line
from spark_integration.executor import JobRecord, RunResult
from spark_integration.job_history import JobHistory, QueryRun, StageRun
from spark_integration.plan_dag import PlanDag, plan_dag
from spark_integration.schedulers import make_driver
from spark_integration.session import declared_ladder, task_slots

log = logging.getLogger(__name__)

Work = str | Callable[[SparkSession], Any]
_FINAL_STAGE = ("COMPLETE", "SKIPPED", "FAILED")


@dataclass(frozen=True)
class UserJob:
    """One job of a stream: ``work`` (SQL text or ``f(spark)``) arriving ``arrival_s`` after
    the stream starts."""

    name: str
    work: Work
    arrival_s: float = 0.0


@dataclass
class _SparkStage:
    stage_id: int
    num_tasks: int = 0
    active: int = 0
    complete: int = 0
    status: str = ""
    executor_s: float = 0.0

    @property
    def ran(self) -> bool:
        return self.status != "SKIPPED" and (self.active > 0 or self.complete > 0
                                             or self.status == "COMPLETE")


class _Admission(AdmissionJob):
    """The admission bookkeeping of a user job, plus the Spark stages mapped onto its
    estimated stages (``spark_ran[k]`` is estimated stage ``k``)."""

    def __init__(self, name: str, arrival_s: float, template: Job) -> None:
        super().__init__(name, arrival_s, template)
        self.spark_ran: list[_SparkStage] = []


@dataclass
class _Job:
    """A submitted job: what it runs, the policy's bookkeeping and Spark's progress."""

    name: str
    work: Work
    future: Future
    submitted_s: float
    signature: str
    dag: PlanDag | None
    admission: _Admission
    work_source: str
    frame: DataFrame | None = None
    group: str = ""
    tag: str = ""
    pool: str | None = None
    level: int = 0
    props: Any = None
    thread: threading.Thread | None = None
    started_s: float | None = None
    ended_s: float | None = None
    error: str = ""
    pools: list[str] = field(default_factory=list)
    decided: set[int] = field(default_factory=set)
    stages: dict[int, _SparkStage] = field(default_factory=dict)
    final_jobs: set[int] = field(default_factory=set)

    def ran(self) -> list[_SparkStage]:
        return sorted((s for s in self.stages.values() if s.ran), key=lambda s: s.stage_id)


class PolicyScheduler:
    """Schedule SQL statements and DataFrame callables on ``spark`` under ``policy``.

    ``policy``: a name :func:`spark_integration.schedulers.make_driver` knows (``sjf``,
    ``fair``, ``agent``, ``spark-fair``, ``spark-fifo``, a policy file) or a
    :class:`~agents.scheduler.Scheduler`. ``history``: a :class:`JobHistory` or the path of its
    JSON file (default: in memory). ``total_executors``: task slots (default: read from Spark at
    every decision; a shipped policy is checked against it). ``poll_s``: how often Spark's
    progress is read. ``progress``: print a line per finished job.
    """

    def __init__(self, spark: SparkSession, policy: str | Scheduler = "sjf", *,
                 history: JobHistory | str | Path | None = None,
                 limits: ObservationLimits | None = None,
                 total_executors: int | None = None, poll_s: float = 0.25,
                 progress: bool = False) -> None:
        self.spark = spark
        self.sc = spark.sparkContext
        self.fixed_executors = total_executors
        if isinstance(policy, str):
            driver = make_driver(policy, limits, executors=total_executors,
                                 master=self.sc.master)
            self.name, self.policy, self.limits = driver.name, driver.scheduler, driver.limits
            self.native_pools = driver.native_pools
        else:
            self.name = getattr(policy, "name", type(policy).__name__)
            self.policy, self.limits, self.native_pools = policy, limits or ObservationLimits(), True
        self.history = history if isinstance(history, JobHistory) else JobHistory(history)
        self.poll_s = poll_s
        self.progress = progress
        self.ladder = (declared_ladder(self.sc, "PolicyScheduler") if self.policy is not None
                       else {})
        self._pool_users: dict[str, int] = {}
        self._inbox: queue.Queue = queue.Queue()
        self._queued: list[_Job] = []
        self._running: list[_Job] = []
        self._jobs: list[_Job] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._cancelled = threading.Event()
        self._app_active = 0
        self._run_id = uuid.uuid4().hex[:8]
        self._t0 = time.monotonic()
        self.decisions = self.invalid_actions = 0
        self.latencies_s: list[float] = []
        self.executor_counts: list[int] = []
        if self.policy is not None:
            self.policy.reset()
        self._decider = threading.Thread(target=self._decide_loop, daemon=True,
                                         name=f"pipesched-decider-{self._run_id}")
        self._decider.start()

    # ----------------------------------------------------------------- public API
    def submit(self, work: Work, name: str | None = None) -> Future:
        """Queue ``work`` (one SQL statement or ``f(spark)``); the future holds the SQL
        result's rows or ``f``'s return value, or raises the job's error. Any thread."""
        if self._closing.is_set():
            raise RuntimeError("PolicyScheduler is closed")
        with self._lock:
            name = name or f"job{len(self._jobs)}"
            if any(j.name == name for j in self._jobs):
                raise ValueError(f"a job named {name!r} was already submitted")
        job = self._prepare(name, work)
        with self._lock:
            self._jobs.append(job)
        self._inbox.put(("submit", job))
        return job.future

    def run(self, stream: Sequence[UserJob], timeout_s: float | None = None) -> RunResult:
        """Submit ``stream`` at its arrival times (relative to now), wait for every job and
        return the run's records; a failed job is recorded, not raised. Ctrl-C cancels every
        job of the scheduler, then is re-raised."""
        start = time.monotonic()
        jobs = []
        try:
            for spec in sorted(stream, key=lambda j: j.arrival_s):
                time.sleep(max(0.0, start + spec.arrival_s - time.monotonic()))
                self.submit(spec.work, spec.name)
                jobs.append(self._jobs[-1])
            for job in jobs:
                try:
                    job.future.result(timeout=timeout_s)
                except Exception:  # noqa: BLE001  # deliberate: recorded in the job's record
                    pass
        except BaseException:  # deliberate: Ctrl-C, a bad job: cancel everything, re-raise
            self._cancel_all()
            raise
        records = [self._record(job, start) for job in jobs]
        wall = max((j.ended_s for j in jobs if j.ended_s is not None), default=start) - start
        return RunResult(self.name, records, task_slots(self.sc, self.fixed_executors), wall,
                         self.decisions, self.invalid_actions, list(self.executor_counts),
                         list(self.latencies_s))

    def close(self, cancel: bool = False) -> None:
        """Wait for every submitted job (``cancel``: cancel them instead), then stop."""
        if cancel:
            self._cancel_all()
        self._closing.set()
        self._inbox.put(("wake", None))
        self._decider.join()
        for job in list(self._jobs):
            if job.thread is not None:
                job.thread.join()

    def __enter__(self) -> PolicyScheduler:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(cancel=kind is not None)

    # ----------------------------------------------------------------- preparing a job
    def _prepare(self, name: str, work: Work) -> _Job:
        """Plan the job (SQL queries: analysed and planned, not run) and estimate its stages;
        its JCT counts from now, planning included."""
        submitted = self._now()
        frame, dag = None, None
        if isinstance(work, str):
            if not work.strip():
                raise ValueError(f"job {name!r}: empty SQL statement")
            if _is_query(self.spark, work):
                frame = self.spark.sql(work)
                dag = plan_dag(frame)
        elif not callable(work):
            raise TypeError(f"job {name!r}: work must be SQL text or a callable f(spark), got "
                            f"{type(work).__name__}")
        if dag is not None:
            signature = dag.signature
            work_s, source = self.history.stage_work_s(dag)
            stages = [Stage(id=s.id, parents=s.parents, num_tasks=max(1, s.partitions),
                            compute_s=w / max(1, s.partitions), name=s.kind, job_name=name)
                      for s, w in zip(dag.stages, work_s, strict=True)]
        else:
            signature = f"callable:{name.split('#')[0]}" if callable(work) else \
                f"command:{' '.join(work.split()).lower()}"
            work_s, source = self.history.job_work_s(signature)
            stages = [Stage(id=i, parents=(i - 1,) if i else (), num_tasks=1, compute_s=w,
                            job_name=name) for i, w in enumerate(work_s)]
        template = Job(name, submitted, stages)
        return _Job(name, work, Future(), submitted, signature, dag,
                    _Admission(name, submitted, template), source, frame=frame)

    # ----------------------------------------------------------------- the decider thread
    def _decide_loop(self) -> None:
        while True:
            changed = self._drain(self.poll_s)
            self._drop_cancelled()
            changed |= self._poll_progress()
            if self._queued and self._free() > 0:
                changed = True
            if changed:
                self._decide()
            if self._closing.is_set() and not self._queued and not self._running \
                    and self._inbox.empty():
                return

    def _drain(self, timeout_s: float) -> bool:
        """Apply submissions and job ends that arrived within ``timeout_s``; whether any."""
        changed = False
        try:
            event = self._inbox.get(timeout=timeout_s)
            while True:
                kind, job = event[0], event[1]
                if kind == "submit":
                    self._queued.append(job)
                    changed = True
                    if self.policy is None:
                        self._start(job, 0)
                elif kind == "end":
                    self._end(job, event[2])
                    changed = True
                event = self._inbox.get_nowait()
        except queue.Empty:
            pass
        return changed

    def _drop_cancelled(self) -> None:
        for job in [j for j in self._queued if j.future.cancelled()]:
            self._queued.remove(job)
            job.ended_s = self._now()
            job.error = "cancelled before it started"

    def _decide(self) -> None:
        """Ask the policy until it waits; start or move the jobs it names."""
        if self.policy is None:
            return
        while True:
            jobs = [*self._running, *self._queued]
            if not jobs:
                return
            state = self._state(jobs)
            self.executor_counts.append(state.total_executors)
            choice, executors = admit(self.policy, state, [j.admission for j in jobs],
                                      self.limits)
            self.decisions += choice.asked
            self.invalid_actions += choice.invalid
            if choice.asked:
                self.latencies_s.append(choice.act_s)
            if choice.decision is None:
                return
            job = jobs[choice.decision.job_index]
            stage = choice.decision.stage_id
            job.decided.add(stage)
            job.admission.launched.add(stage)
            job.admission.running[stage] = executors
            level = min(choice.decision.parallelism, state.total_executors)
            if job.thread is None:
                self._start(job, level)
            elif level != job.level:
                self._move(job, level)

    def _state(self, jobs: list[_Job]) -> ClusterState:
        total = task_slots(self.sc, self.fixed_executors)
        held = max(sum(j.admission.held for j in jobs), self._app_active)
        pending = bool(self._running) or not self._inbox.empty()
        return live_state(self._now(), [j.admission for j in jobs], pending, total, held,
                          self._stage_fraction)

    def _free(self) -> int:
        total = task_slots(self.sc, self.fixed_executors)
        return total - max(sum(j.admission.held for j in self._running), self._app_active)

    @staticmethod
    def _stage_fraction(admission: _Admission, index: int) -> float:
        ran = admission.spark_ran
        if index >= len(ran) or ran[index].num_tasks == 0:
            return 0.0
        return ran[index].complete / ran[index].num_tasks

    # ----------------------------------------------------------------- Spark's progress
    def _poll_progress(self) -> bool:
        """Read each running job's stages from Spark, and the application's active tasks;
        whether a stage of ours started or finished."""
        tracker = self.sc.statusTracker()
        self._app_active = sum(info.numActiveTasks for info in map(
            tracker.getStageInfo, tracker.getActiveStageIds()) if info is not None)
        changed = False
        for job in self._running:
            before = [(s.stage_id, s.status) for s in job.ran()]
            self._read_stages(job)
            ran = job.ran()
            changed |= before != [(s.stage_id, s.status) for s in ran]
            self._map_progress(job, ran)
        return changed

    def _read_stages(self, job: _Job) -> None:
        tracker = self.sc.statusTracker()
        store = self.sc._jsc.sc().statusStore()
        for spark_job in tracker.getJobIdsForGroup(job.group):
            if spark_job in job.final_jobs:
                continue
            info = tracker.getJobInfo(spark_job)
            if info is None:
                continue
            final = info.status in ("SUCCEEDED", "FAILED")
            for stage_id in info.stageIds:
                stage = job.stages.setdefault(stage_id, _SparkStage(stage_id))
                if stage.status in _FINAL_STAGE:
                    continue
                try:
                    data = store.lastStageAttempt(stage_id)
                except Exception:  # noqa: BLE001  # deliberate: not in the store yet
                    final = False
                    continue
                stage.num_tasks = int(data.numTasks())
                stage.active = int(data.numActiveTasks())
                stage.complete = int(data.numCompleteTasks())
                stage.status = data.status().toString()
                stage.executor_s = data.executorRunTime() / 1000.0
                final &= stage.status in _FINAL_STAGE
            if final:
                job.final_jobs.add(spark_job)

    @staticmethod
    def _map_progress(job: _Job, ran: list[_SparkStage]) -> None:
        """The k-th stage Spark ran is the k-th estimated stage (later extras fold into the
        last): done, running with its active tasks as executors, launched."""
        admission = job.admission
        count = admission.num_nodes
        mapped = ran[:count]
        admission.spark_ran = mapped
        admission.done = {k for k, s in enumerate(mapped) if s.status == "COMPLETE"}
        if len(ran) > count and any(s.status != "COMPLETE" for s in ran[count - 1:]):
            admission.done.discard(count - 1)
        admission.launched |= set(range(len(mapped))) | job.decided
        admission.running = {k: (mapped[k].active if k < len(mapped) else 0)
                             for k in admission.launched - admission.done}
        if len(ran) > count:
            admission.running[count - 1] = sum(s.active for s in ran[count - 1:])

    # ----------------------------------------------------------------- starting, moving, ending
    def _start(self, job: _Job, level: int) -> None:
        if not job.future.set_running_or_notify_cancel():
            self._drop_cancelled()
            return
        job.group = f"pipesched|{self._run_id}|{job.name}"
        job.tag = f"pipesched-{self._run_id}-{self._jobs.index(job)}"
        job.pool = self._pool_for(job, level)
        job.started_s = self._now()
        self._queued.remove(job)
        self._running.append(job)
        ready = threading.Event()
        job.thread = InheritableThread(target=self._run_job, args=(job, ready), daemon=True,
                                       name=f"pipesched-job-{job.name}")
        job.thread.start()
        ready.wait()  # the thread's Properties exist before the next decision may move it

    def _pool_for(self, job: _Job, level: int) -> str | None:
        """The declared pool of the largest level <= ``level`` with the fewest jobs in it
        (Spark-native: the job's own pool, or the default pool for FIFO)."""
        if self.policy is None:
            pool = f"job_{job.name}" if self.native_pools else None
            job.pools += [pool] if pool else []
            return pool
        levels = [k for k in self.ladder if k <= max(level, 1)] or [min(self.ladder)]
        job.level = max(levels)
        pool = min(self.ladder[job.level], key=lambda p: self._pool_users.get(p, 0))
        self._pool_users[pool] = self._pool_users.get(pool, 0) + 1
        job.pools.append(pool)
        return pool

    def _release_pool(self, job: _Job) -> None:
        if job.pool is not None and job.pool in self._pool_users:
            self._pool_users[job.pool] -= 1

    def _move(self, job: _Job, level: int) -> None:
        """Later Spark jobs of the query go to the pool of ``level`` (the thread's live
        Properties; already submitted tasks stay)."""
        self._release_pool(job)
        job.pool = self._pool_for(job, level)
        job.props.setProperty("spark.scheduler.pool", job.pool)

    def _run_job(self, job: _Job, ready: threading.Event) -> None:
        """The job thread: runs the work in the job's group and pool, reports the outcome."""
        try:
            if job.pool is not None:
                self.sc.setLocalProperty("spark.scheduler.pool", job.pool)
            self.sc.setJobGroup(job.group, job.name, interruptOnCancel=True)
            self.sc.addJobTag(job.tag)
            job.props = self.sc._jsc.sc().getLocalProperties()
        finally:
            ready.set()
        try:
            if job.frame is not None:
                outcome: Any = job.frame.collect()
            elif isinstance(job.work, str):
                outcome = self.spark.sql(job.work).collect()
            else:
                outcome = job.work(self.spark)
        except BaseException as error:  # deliberate: handed to the job's future
            outcome = error
        self._inbox.put(("end", job, outcome))

    def _end(self, job: _Job, outcome: Any) -> None:
        """A job thread ended: learn its stages, settle its future, free its pool."""
        job.ended_s = self._now()
        job.thread.join()
        self._read_stages(job)
        self._release_pool(job)
        self._running.remove(job)
        if isinstance(outcome, BaseException):
            job.error = error_line(outcome)
            self._print(f"[{job.ended_s:7.1f}s] {job.name} FAILED: {job.error}")
            job.future.set_exception(outcome)
            return
        self._print(f"[{job.ended_s:7.1f}s] {job.name} done, JCT "
                    f"{job.ended_s - job.submitted_s:.1f} s")
        ran = job.ran()
        if ran:
            self.history.add(job.signature, QueryRun(
                tuple(StageRun(s.num_tasks, s.executor_s) for s in ran),
                sum(s.input_bytes for s in job.dag.stages) if job.dag else 0))
        job.future.set_result(outcome)

    def _cancel_all(self) -> None:
        """Cancel every queued job and the Spark jobs of every running one (once)."""
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        for job in list(self._queued):
            job.future.cancel()
        for job in list(self._running):
            self.sc.cancelJobsWithTag(job.tag)

    # ----------------------------------------------------------------- records
    def _record(self, job: _Job, start: float) -> JobRecord:
        def rel(t: float | None) -> float | None:
            return None if t is None else t - (start - self._t0)

        if job.future.cancelled():
            status = "cancelled"
        elif job.future.done():
            status = "failed" if job.error else "done"
        else:
            status = "running"
        return JobRecord(job.name, job.signature, rel(job.submitted_s), [], rel(job.started_s),
                         rel(job.ended_s), status, job.error)

    def pools_of(self, name: str) -> list[str]:
        """The FAIR pools job ``name`` ran in, in order (empty: Spark's default pool)."""
        return next(list(j.pools) for j in self._jobs if j.name == name)

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _print(self, line: str) -> None:
        if self.progress:
            print(line, flush=True)


def _is_query(spark: SparkSession, sql: str) -> bool:
    """Whether ``sql`` is a query (lazy: planned before it runs) rather than a command, which
    ``spark.sql`` would execute at once (DDL, INSERT, SET...)."""
    jvm = spark.sparkContext._jvm
    plan = spark._jsparkSession.sessionState().sqlParser().parsePlan(sql)
    command = jvm.java.lang.Class.forName(
        "org.apache.spark.sql.catalyst.plans.logical.Command")
    return not command.isInstance(plan) and plan.getClass().getSimpleName() not in (
        "InsertIntoStatement", "SetCommand", "ResetCommand")
