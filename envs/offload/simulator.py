"""The one timing model of offloading (its exact semantics are written out in docs/offload.md).

A plan is a sequence of ``(job_index, cut)`` pairs processed in order. The device, the uplink
and the server each serve one job at a time in plan order; a job whose cut leaves a resource
with nothing to do neither occupies nor waits for it::

    D = sum(d[1..c]);  S = sum(s[c+1..L]);  U = latency_s + 8*o[c]/(bandwidth_mbps*1e6)
    device_done = device_free + D  (device_free += D)   if D > 0   else 0
    if c < L:  up_done = max(uplink_free, device_done) + U;  uplink_free = up_done
               job_done = max(server_free, up_done) + S;   server_free = job_done
    else:      job_done = device_done
    makespan = max over jobs of job_done

A *sequential* plan (how a single-job partitioner such as Neurosurgeon runs a batch) starts
each job only when the previous one has finished, so jobs never overlap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from envs.offload.instance import InstanceError, OffloadInstance

RESOURCES = ("device", "uplink", "server")


@dataclass(frozen=True)
class Plan:
    """Processing order and cut of every job; ``sequential`` forbids overlap between jobs."""

    steps: tuple[tuple[int, int], ...]
    sequential: bool = False

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def cuts(self) -> dict[int, int]:
        return dict(self.steps)

    def order(self) -> list[int]:
        return [job for job, _ in self.steps]


PlanLike = Plan | Sequence[tuple[int, int]]


def as_plan(plan: PlanLike) -> Plan:
    if isinstance(plan, Plan):
        return plan
    return Plan(tuple((int(job), int(cut)) for job, cut in plan))


@dataclass(frozen=True)
class Interval:
    job: int
    start_s: float
    end_s: float


@dataclass
class SimulationResult:
    makespan_s: float
    job_done_s: dict[int, float]
    intervals: dict[str, list[Interval]] = field(default_factory=dict)
    plan: Plan | None = None

    @property
    def device(self) -> list[Interval]:
        return self.intervals["device"]

    @property
    def uplink(self) -> list[Interval]:
        return self.intervals["uplink"]

    @property
    def server(self) -> list[Interval]:
        return self.intervals["server"]


class ResourceClock:
    """When the device, the uplink and the server are next free; the timing rules live here."""

    __slots__ = ("device_free_s", "uplink_free_s", "server_free_s", "makespan_s")

    def __init__(self, device_free_s: float = 0.0, uplink_free_s: float = 0.0,
                 server_free_s: float = 0.0, makespan_s: float = 0.0) -> None:
        self.device_free_s = device_free_s
        self.uplink_free_s = uplink_free_s
        self.server_free_s = server_free_s
        self.makespan_s = makespan_s

    def copy(self) -> ResourceClock:
        return ResourceClock(self.device_free_s, self.uplink_free_s, self.server_free_s,
                             self.makespan_s)

    def advance(self, device_s: float, upload_s: float, server_s: float, offloads: bool,
                barrier_s: float = 0.0) -> float:
        """Apply the rules of the module docstring to one job; return when it finishes."""
        if device_s > 0:
            self.device_free_s += device_s
            device_done = self.device_free_s
        else:
            device_done = barrier_s
        if offloads:
            self.uplink_free_s = max(self.uplink_free_s, device_done) + upload_s
            job_done = max(self.server_free_s, self.uplink_free_s) + server_s
            self.server_free_s = job_done
        else:
            job_done = device_done
        self.makespan_s = max(self.makespan_s, job_done)
        return job_done

    def start_after_all(self) -> float:
        """Sequential mode: nothing starts before every earlier job has finished."""
        self.device_free_s = self.uplink_free_s = self.server_free_s = self.makespan_s
        return self.makespan_s


class Timeline:
    """Incremental simulator: append ``(job, cut)`` steps one at a time, with validation and
    busy intervals. The env and :func:`simulate` both use it."""

    def __init__(self, instance: OffloadInstance, sequential: bool = False) -> None:
        self.instance = instance
        self.sequential = sequential
        self.clock = ResourceClock()
        self.job_done_s: dict[int, float] = {}
        self.intervals: dict[str, list[Interval]] = {name: [] for name in RESOURCES}
        self._times = [instance.cut_times(j) for j in range(instance.num_jobs)]

    @property
    def makespan_s(self) -> float:
        return self.clock.makespan_s

    def check_step(self, job: int, cut: int) -> None:
        if not 0 <= job < self.instance.num_jobs:
            raise InstanceError(f"plan names job {job}, but the instance has "
                                f"{self.instance.num_jobs} jobs")
        if job in self.job_done_s:
            raise InstanceError(f"plan schedules job {job} twice")
        num_cuts = self.instance.jobs[job].num_cuts
        if not 0 <= cut < num_cuts:
            raise InstanceError(f"job {job} ({self.instance.jobs[job].name!r}): cut {cut} out of "
                                f"range 0..{num_cuts - 1}")

    def add(self, job: int, cut: int) -> float:
        """Schedule ``job`` at ``cut`` after everything added so far; return its finish time."""
        self.check_step(job, cut)
        device_s, upload_s, server_s = (float(times[cut]) for times in self._times[job])
        offloads = cut != self.instance.jobs[job].local_cut
        barrier_s = self.clock.start_after_all() if self.sequential else 0.0
        device_start_s = self.clock.device_free_s
        job_done = self.clock.advance(device_s, upload_s, server_s, offloads, barrier_s)
        if device_s > 0:
            self.intervals["device"].append(Interval(job, device_start_s, device_start_s + device_s))
        if offloads:
            upload_end_s = self.clock.uplink_free_s
            self.intervals["uplink"].append(Interval(job, upload_end_s - upload_s, upload_end_s))
            self.intervals["server"].append(Interval(job, job_done - server_s, job_done))
        self.job_done_s[job] = job_done
        return job_done

    def result(self, plan: Plan | None = None) -> SimulationResult:
        return SimulationResult(self.makespan_s, dict(self.job_done_s),
                                {k: list(v) for k, v in self.intervals.items()}, plan)


def simulate(instance: OffloadInstance, plan: PlanLike, require_all: bool = True) -> SimulationResult:
    """Makespan and busy intervals of ``plan`` on ``instance`` (see the module docstring).

    Raises :class:`InstanceError` for an unknown job, a repeated job, a cut out of range, or
    (with ``require_all``) a job the plan leaves out.
    """
    plan = as_plan(plan)
    timeline = Timeline(instance, sequential=plan.sequential)
    for job, cut in plan:
        timeline.add(job, cut)
    if require_all and len(timeline.job_done_s) != instance.num_jobs:
        missing = sorted(set(range(instance.num_jobs)) - set(timeline.job_done_s))
        raise InstanceError(f"plan leaves out job(s) {missing}")
    return timeline.result(plan)


def makespan(instance: OffloadInstance, plan: PlanLike) -> float:
    return simulate(instance, plan).makespan_s


def makespan_from_times(steps: Iterable[tuple[float, float, float, bool]],
                        start: ResourceClock | None = None) -> float:
    """Makespan of a pipelined plan given each step's ``(D, U, S, offloads)``.

    The fast path for search heuristics: no validation, no intervals, same rules. ``start``
    is the state left by jobs already scheduled (default: everything idle at time 0).
    """
    clock = start.copy() if start is not None else ResourceClock()
    for device_s, upload_s, server_s, offloads in steps:
        clock.advance(device_s, upload_s, server_s, offloads)
    return clock.makespan_s


def plan_from_pairs(pairs: Iterable[tuple[int, int]], sequential: bool = False) -> Plan:
    return Plan(tuple((int(j), int(c)) for j, c in pairs), sequential)
