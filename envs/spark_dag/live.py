"""Live mode of the Spark DAG shop: nodes admitted whole, their tasks spread as Spark's FAIR
scheduler spreads them.

The task-level :class:`~envs.spark_dag.simulator.DagShopSimulator` frees executors task by
task; a live Spark run under :class:`spark_integration.executor.DagExecutor` does not: it
launches a whole DAG node at a parallelism ``q`` as Spark jobs in a FAIR pool of its own with
``minShare = q``, counts ``q`` executors as held until the node ends, and leaves the placement
of the node's tasks to Spark. This module simulates that system, event by event, so a bridge
that predicts live runs (:func:`spark_integration.calibration.predict_live`) calls it instead
of keeping a model of its own.

Timing rules of :class:`LiveSimulator` (``E`` = ``num_executors`` task slots):

- **Arrivals.** Jobs enter in arrival order; every job arriving within 1e-9 s of the clock
  enters at that instant.
- **Decisions.** At every instant where a job entered or a node ended, the scheduler is asked
  by the admission rules of :mod:`envs.spark_dag.admission` until it waits (see
  :func:`~envs.spark_dag.admission.next_decision`); it observes the jobs' *templates*, with
  running nodes' task counts and remaining work scaled by their progress (below).
- **Admission.** A decision ``(job, node, cap)`` launches the node with the *floor*
  ``q = max(1, min(free, cap - held by the job))``; ``free`` is ``E`` minus the floors of the
  running nodes, so the floors never add up to more than ``E``. The floor is what admission
  counts as held, from launch to end; it is not a cap on what the node runs on.
- **Tasks.** A node launched at ``q`` has ``P`` tasks per Spark stage, by the
  :class:`PartitionRule`: ``P = fixed`` (the fixed rule: every node the same, e.g. ``2 E``)
  or ``P = tasks_per_executor * q`` (the executor's default, ``2 q``). ``P`` caps the slots
  the node can use at any instant, for its whole life: each of its Spark stages starts again
  with ``P`` tasks, and the tail of a stage with fewer tasks left than slots is already in
  the measured wall times below, so the cap does not shrink with progress. With one task per
  executor held (``tasks_per_executor=1``, ``P = q``) no node runs beyond its floor: the hard
  cap this mode had before issue 26.
- **Slots (Spark FAIR, one pool per node, weight 1).** At every instant the ``E`` slots are
  shared by water-filling (:func:`fair_slots`): node ``i`` runs on
  ``s_i = min(P_i, max(min(q_i, P_i), level))``, where ``level`` is the largest value with
  ``sum s_i <= E``. So every node first gets its floor (Spark serves pools below their
  ``minShare`` first), then the free slots go to the nodes with the fewest slots that still
  have tasks to place (Spark's next comparison, running tasks / weight), each up to ``P_i``.
  A node alone with ``P >= E`` runs on all ``E`` slots whatever its ``q``. Slots no node can
  use stay idle.
- **Fractional slots.** ``s_i`` is a real number: Spark assigns whole slots, but when two
  pools tie for a free slot the next finished task hands it to the other, so over a node's
  life its slot count alternates between ``floor(s_i)`` and ``ceil(s_i)``; ``s_i`` is the
  time average, and the node's rate is the matching average of the two counts' rates (linear
  interpolation). An integer split would need Spark's tie-break by pool name, which says
  nothing about which node finishes first.
- **Progress.** A node's :class:`NodeTiming` gives its wall time *alone on ``s`` slots*
  (``wall_s(s)``: a per-``s`` table of measured times, or ``fixed_s + work_s / s``). On
  ``s_i`` slots it progresses at ``r(s_i) / speed / (1 + contention * (n - 1))`` per second,
  ``r(s) = 1 / wall_s(s)`` at whole ``s`` (interpolated between), ``n`` the number of running
  nodes; ``contention`` (default 0) is an extra slowdown from what the slots do not divide
  (the driver, cores shared beyond the slots). A node ends when its progress reaches 1
  (within 1e-9 s of remaining time); its progress fraction is what the observation scales
  the template by. Allocations change only when a node starts or ends, so between events
  every rate is constant and ends are exact. A node that needs a slot count its table lacks
  ends the run with a ValueError naming the job, node and count (no other count's time
  stands in). Driver-side time, shuffles and I/O are in the wall times: there is no separate
  network, moving delay or warm-up.
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
    """A node's wall time alone as a function of the task slots ``s`` it runs on: the measured
    table ``walls_s`` (``s -> seconds``; an ``s`` not in it is a ValueError naming it) when
    given, else ``fixed_s + work_s / s``."""

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

    def rate(self, slots: float) -> float:
        """Progress per second alone on ``slots`` (>= 1) slots: ``1 / wall_s`` at whole counts,
        linear in between (the time average of the two counts); inf for a zero wall time."""
        low = math.floor(slots + _EPS)
        share = max(slots - low, 0.0)
        rate = _inverse(self.wall_s(low))
        if share > _EPS:
            rate = (1.0 - share) * rate + share * _inverse(self.wall_s(low + 1))
        return rate

    def missing_counts(self, num_executors: int) -> list[int]:
        """The executor counts in ``1..num_executors`` this timing has no wall time for."""
        if not self.walls_s:
            return []
        return [q for q in range(1, num_executors + 1) if q not in self.walls_s]


def _inverse(wall_s: float) -> float:
    return 1.0 / wall_s if wall_s > 0 else math.inf


@dataclass(frozen=True)
class PartitionRule:
    """Tasks per Spark stage of a node launched at parallelism ``q``, as
    :class:`spark_integration.executor.DagExecutor` sizes them: ``fixed`` for every node when
    given (the benchmark's fixed rule, ``2 E``), else ``tasks_per_executor * q`` (the
    executor's default)."""

    fixed: int | None = None
    tasks_per_executor: int = 2

    def __post_init__(self) -> None:
        if self.fixed is not None and self.fixed < 1:
            raise ValueError(f"PartitionRule: fixed must be >= 1, got {self.fixed}")
        if self.tasks_per_executor < 1:
            raise ValueError(f"PartitionRule: tasks_per_executor must be >= 1, got "
                             f"{self.tasks_per_executor}")

    def partitions(self, parallelism: int) -> int:
        return self.fixed or max(1, parallelism) * self.tasks_per_executor


#: the DagExecutor's default rule: ``2 q`` tasks per stage for a node launched at ``q``
EXECUTOR_PARTITIONS = PartitionRule()


def fair_slots(floors: Sequence[float], caps: Sequence[float], total: float) -> list[float]:
    """Slots per running node when ``total`` slots are shared by Spark FAIR pools (one per
    node, weight 1, ``minShare`` = the node's floor) among nodes with ``caps`` tasks: node
    ``i`` gets ``min(cap_i, max(min(floor_i, cap_i), level))`` with ``level`` as high as the
    slots allow (water-filling). Floors adding up to more than ``total`` are a ValueError."""
    floors = [min(f, c) for f, c in zip(floors, caps, strict=True)]
    if sum(floors) > total + _EPS:
        raise ValueError(f"fair_slots: floors {floors} exceed the {total} slots")

    def filled(level: float) -> float:
        return sum(min(c, max(f, level)) for f, c in zip(floors, caps, strict=True))

    if sum(floors) >= total:
        return floors
    points = sorted(set(floors) | set(caps))
    if not points or filled(points[-1]) <= total:
        return list(caps)
    # filled() is linear between breakpoints; filled(points[0]) = sum(floors) < total
    high = next(p for p in points if filled(p) > total)
    low = max(p for p in points if p < high)
    level = low + (total - filled(low)) * (high - low) / (filled(high) - filled(low))
    return [min(c, max(f, level)) for f, c in zip(floors, caps, strict=True)]


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
        """``job`` with every node taking ``fixed_s + (its stage's executor-seconds) / s``."""
        return cls(job.name, job.arrival_s, job,
                   tuple(NodeTiming(fixed_s, stage.work_s) for stage in job.stages))


@dataclass(frozen=True)
class NodeRun:
    """One node's life in a live-mode run: launched at ``launch_s`` with the floor
    ``executors`` and ``partitions`` tasks per stage, ended at ``end_s``, having run on
    ``slot_s`` slot-seconds (``slot_s / (end_s - launch_s)``: its mean slot count)."""

    job: str
    node: int
    executors: int
    partitions: int
    launch_s: float
    end_s: float
    slot_s: float


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
    timing: NodeTiming
    floor: int
    partitions: int
    launch_s: float
    done: float = 0.0  # progress fraction
    slots: float = 0.0
    rate: float = 0.0  # progress per second at ``slots``
    slot_s: float = 0.0

    def left_s(self) -> float:
        """Seconds to the end at the current rate."""
        return 0.0 if math.isinf(self.rate) else (1.0 - self.done) / self.rate

    def advance(self, step_s: float) -> None:
        self.done = 1.0 if math.isinf(self.rate) else self.done + step_s * self.rate
        self.slot_s += step_s * self.slots


class LiveSimulator:
    """Node-granular live-admission simulator on ``num_executors`` task slots (timing rules in
    the module docstring). ``speed`` multiplies every node's alone wall time; ``contention`` is
    the extra slowdown each other running node causes; ``partitions`` sizes each node's tasks
    (default: the executor's ``2 q``); ``limits`` is the observation padding of the
    scheduler."""

    def __init__(self, num_executors: int, limits: ObservationLimits, speed: float = 1.0,
                 contention: float = 0.0, partitions: PartitionRule = EXECUTOR_PARTITIONS) -> None:
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
        self.partitions = partitions

    def _share(self, running: Sequence[_Running], now: float) -> None:
        """Set every running node's slots (:func:`fair_slots`) and progress rate."""
        slots = fair_slots([e.floor for e in running],
                           [min(e.partitions, self.num_executors) for e in running],
                           self.num_executors)
        slowdown = self.speed * (1.0 + self.contention * max(len(running) - 1, 0))
        for entry, share in zip(running, slots, strict=True):
            entry.slots = share
            try:
                entry.rate = entry.timing.rate(share) / slowdown
            except ValueError as missing:
                stage = entry.job.template.stages[entry.node]
                raise ValueError(
                    f"job {entry.job.name!r} node {stage.name or entry.node!r}: runs on "
                    f"{share:g} slots at {now:.3f} s (floor {entry.floor}, {entry.partitions} "
                    f"tasks), a count its trace never recorded ({missing}); record the trace "
                    f"at every count (spark_integration.tracegen --executor-counts)") from None

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
            return min(running[(job.name, node)].done, 1.0)

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
                running[(job.name, node)] = _Running(
                    job, node, timings[job.name][node], executors,
                    self.partitions.partitions(executors), now)

        while arrivals or running:
            entered = False
            while arrivals and arrivals[0].arrival_s <= now + _EPS:
                spec = arrivals.pop(0)
                timings[spec.name] = spec.timings
                live.append(AdmissionJob(spec.name, spec.arrival_s, spec.template))
                entered = True
            if entered:
                decide()
            self._share(list(running.values()), now)
            step = min((entry.left_s() for entry in running.values()), default=math.inf)
            if arrivals:
                step = min(step, arrivals[0].arrival_s - now)
            now += step
            ended = []
            for key, entry in running.items():
                entry.advance(step)
                if entry.left_s() <= _EPS:
                    ended.append(key)
            for key in ended:
                entry = running.pop(key)
                job = entry.job
                job.running.pop(entry.node)
                job.done.add(entry.node)
                run.nodes.append(NodeRun(job.name, entry.node, entry.floor, entry.partitions,
                                         entry.launch_s, now, entry.slot_s))
                if len(job.done) == job.num_nodes:
                    run.jct_s[job.name] = now - job.arrival_s
                    live.remove(job)
            if ended:
                decide()
        run.nodes.sort(key=lambda node: node.launch_s)
        return run
