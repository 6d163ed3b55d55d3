"""Live mode of the Spark DAG shop: nodes admitted whole, as the live Spark executor runs them.

The task-level :class:`~envs.spark_dag.simulator.DagShopSimulator` frees executors task by
task; a live Spark run under :class:`spark_integration.executor.DagExecutor` does not: it
launches a whole DAG node on ``q`` executors and gets them back only when the node ends. This
module simulates that system, event by event, so a bridge that predicts live runs
(:func:`spark_integration.calibration.predict_live`) calls it instead of keeping a model of
its own.

Timing rules of :class:`LiveSimulator`:

- **Arrivals.** Jobs enter in arrival order; every job arriving within 1e-9 s of the clock
  enters at that instant.
- **Decisions.** At every instant where a job entered or a node ended, the scheduler is asked
  by the admission rules of :mod:`envs.spark_dag.admission` until it waits (see
  :func:`~envs.spark_dag.admission.next_decision`); it observes the jobs' *templates*, with
  running nodes' task counts and remaining work scaled by their progress (below).
- **Admission.** A decision ``(job, node, cap)`` launches the node on
  ``q = max(1, min(free, cap - held by the job))`` executors. The node holds its ``q``
  executors from launch until it ends (nothing returns early, nothing is re-parallelised).
- **Duration.** Alone, a node launched on ``q`` executors takes ``speed * wall_s(q)``: either
  ``fixed_s + work_s / q`` or a per-``q`` table of measured wall times (:class:`NodeTiming`).
  A node launched on a ``q`` its table lacks ends the run with a ValueError naming the job,
  node and count (no other count's time stands in); a replay needs only the counts it uses.
  Driver-side time, shuffles and I/O are in that figure: there is no separate network, moving
  delay or warm-up.
- **Processor sharing.** While ``n`` nodes run, each progresses at
  ``1 / (1 + contention * (n - 1))`` of its alone speed; a node ends when its progress reaches
  its alone duration (within 1e-9 s). A running node's progress fraction (done / duration) is
  what the observation scales the template by.
- **Completion.** A job completes when its last node ends; JCT = end - arrival.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from envs.scheduler import Scheduler
from envs.spark_dag.admission import AdmissionJob, admit, live_state
from envs.spark_dag.observation import ObservationLimits
from envs.spark_dag.workload import Job

_EPS = 1e-9


@dataclass(frozen=True)
class NodeTiming:
    """A node's wall time alone as a function of the executors ``q`` it holds: the measured
    table ``walls_s`` (``q -> seconds``; a ``q`` not in it is a ValueError naming it) when
    given, else ``fixed_s + work_s / q``."""

    fixed_s: float = 0.0
    work_s: float = 0.0
    walls_s: Mapping[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = {"fixed_s": self.fixed_s, "work_s": self.work_s,
                  **{f"walls_s[{q}]": w for q, w in self.walls_s.items()}}
        for name, value in values.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"NodeTiming: {name} must be finite and >= 0, got {value!r}")
        if any(int(q) != q or q < 1 for q in self.walls_s):
            raise ValueError(f"NodeTiming: walls_s keys must be executor counts >= 1, got "
                             f"{sorted(self.walls_s)}")
        if self.walls_s and (self.fixed_s or self.work_s):
            raise ValueError("NodeTiming: give either walls_s or fixed_s/work_s, not both")

    def wall_s(self, executors: int) -> float:
        if not self.walls_s:
            return self.fixed_s + self.work_s / executors
        if executors not in self.walls_s:
            raise ValueError(f"NodeTiming: no wall time recorded at {executors} executors "
                             f"(recorded: {sorted(self.walls_s)})")
        return self.walls_s[executors]

    def missing_counts(self, num_executors: int) -> list[int]:
        """The executor counts in ``1..num_executors`` this timing has no wall time for."""
        if not self.walls_s:
            return []
        return [q for q in range(1, num_executors + 1) if q not in self.walls_s]


@dataclass(frozen=True)
class NodeJob:
    """One job of the live mode: ``template`` (one stage per node: DAG, task counts and work
    the scheduler observes) and ``timings[i]``, the :class:`NodeTiming` of the template's stage
    ``i``."""

    name: str
    arrival_s: float
    template: Job
    timings: tuple[NodeTiming, ...]

    def __post_init__(self) -> None:
        if not (math.isfinite(self.arrival_s) and self.arrival_s >= 0):
            raise ValueError(f"job {self.name!r}: arrival_s must be finite and >= 0, got "
                             f"{self.arrival_s!r}")
        if len(self.timings) != len(self.template.stages):
            raise ValueError(f"job {self.name!r}: {len(self.timings)} node timings for "
                             f"{len(self.template.stages)} template stages")

    def check_counts(self, num_executors: int) -> None:
        """ValueError naming the first node whose timing misses a count in
        ``1..num_executors`` (and the counts it was recorded at)."""
        for stage, timing in zip(self.template.stages, self.timings, strict=True):
            lacking = timing.missing_counts(num_executors)
            if lacking:
                raise ValueError(f"job {self.name!r} node {stage.name or stage.id!r}: no wall "
                                 f"time at executor count(s) {lacking} of 1..{num_executors} "
                                 f"(recorded: {sorted(timing.walls_s)}); record the trace at "
                                 f"those counts (spark_integration.tracegen --executor-counts)")

    @classmethod
    def scaled(cls, job: Job, fixed_s: float = 0.0) -> NodeJob:
        """``job`` with every node taking ``fixed_s + (its stage's executor-seconds) / q``."""
        return cls(job.name, job.arrival_s, job,
                   tuple(NodeTiming(fixed_s, stage.work_s) for stage in job.stages))


@dataclass(frozen=True)
class NodeRun:
    """One node's life in a live-mode run: launched at ``launch_s`` on ``executors``, ended at
    ``end_s``."""

    job: str
    node: int
    executors: int
    launch_s: float
    end_s: float


@dataclass
class LiveRun:
    """A live-mode run: JCT per job, every node's launch and end in launch order, and the
    scheduler queries (``decisions``; ``invalid_actions`` among them) as the executor counts
    them."""

    jct_s: dict[str, float]
    nodes: list[NodeRun]
    decisions: int
    invalid_actions: int

    @property
    def mean_jct_s(self) -> float:
        """Mean JCT over the finished jobs (NaN when none finished)."""
        return float(np.mean(list(self.jct_s.values()))) if self.jct_s else math.nan


@dataclass(slots=True)
class _Running:
    job: AdmissionJob
    node: int
    executors: int
    launch_s: float
    need_s: float  # alone duration, speed included
    left_s: float


class LiveSimulator:
    """Node-granular live-admission simulator on ``num_executors`` executors (timing rules in
    the module docstring). ``speed`` multiplies every node's alone wall time; ``contention`` is
    the processor-sharing slowdown each other running node causes; ``limits`` is the
    observation padding of the scheduler."""

    def __init__(self, num_executors: int, limits: ObservationLimits, speed: float = 1.0,
                 contention: float = 0.0) -> None:
        if num_executors < 1:
            raise ValueError(f"LiveSimulator: num_executors must be >= 1, got {num_executors}")
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"LiveSimulator: speed must be finite and > 0, got {speed!r}")
        if not (math.isfinite(contention) and contention >= 0):
            raise ValueError(f"LiveSimulator: contention must be finite and >= 0, got "
                             f"{contention!r}")
        self.num_executors = num_executors
        self.limits = limits
        self.speed = speed
        self.contention = contention

    def run(self, jobs: Sequence[NodeJob], scheduler: Scheduler) -> LiveRun:
        """Run ``jobs`` to completion under ``scheduler`` (reset first)."""
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"LiveSimulator: duplicate job names in {names}")
        scheduler.reset()
        arrivals = sorted(jobs, key=lambda job: job.arrival_s)
        timings: dict[str, tuple[NodeTiming, ...]] = {}
        live: list[AdmissionJob] = []
        running: dict[tuple[str, int], _Running] = {}
        run = LiveRun({}, [], 0, 0)
        now = 0.0

        def progress(job: AdmissionJob, node: int) -> float:
            entry = running[(job.name, node)]
            return 1.0 - entry.left_s / entry.need_s if entry.need_s > 0 else 1.0

        def decide() -> None:
            while True:
                state = live_state(now, live, bool(arrivals) or bool(running),
                                   self.num_executors, sum(j.held for j in live), progress)
                choice, executors = admit(scheduler, state, live, self.limits)
                run.decisions += choice.asked
                run.invalid_actions += choice.invalid
                if choice.decision is None:
                    return
                job = live[choice.decision.job_index]
                node = choice.decision.stage_id
                job.launched.add(node)
                job.running[node] = executors
                timing = timings[job.name][node]
                if timing.walls_s and executors not in timing.walls_s:
                    raise ValueError(f"job {job.name!r} node {job.template.stages[node].name or node!r}"
                                     f": launched on {executors} executors at {now:.3f} s, a count"
                                     f" its trace never recorded (recorded: "
                                     f"{sorted(timing.walls_s)}); record the trace at that count "
                                     f"(spark_integration.tracegen --executor-counts)")
                need = timing.wall_s(executors) * self.speed
                running[(job.name, node)] = _Running(job, node, executors, now, need, need)

        while arrivals or running:
            entered = False
            while arrivals and arrivals[0].arrival_s <= now + _EPS:
                spec = arrivals.pop(0)
                timings[spec.name] = spec.timings
                live.append(AdmissionJob(spec.name, spec.arrival_s, spec.template))
                entered = True
            if entered:
                decide()
            rate = 1.0 / (1.0 + self.contention * max(len(running) - 1, 0))
            step = min((entry.left_s / rate for entry in running.values()), default=math.inf)
            if arrivals:
                step = min(step, arrivals[0].arrival_s - now)
            now += step
            ended = []
            for key, entry in running.items():
                entry.left_s -= step * rate
                if entry.left_s <= _EPS:
                    ended.append(key)
            for key in ended:
                entry = running.pop(key)
                job = entry.job
                job.running.pop(entry.node)
                job.done.add(entry.node)
                run.nodes.append(NodeRun(job.name, entry.node, entry.executors, entry.launch_s,
                                         now))
                if len(job.done) == job.num_nodes:
                    run.jct_s[job.name] = now - job.arrival_s
                    live.remove(job)
            if ended:
                decide()
        run.nodes.sort(key=lambda node: node.launch_s)
        return run
