"""``ClusterState``: a snapshot of the DAG shop at a decision point.

The simulator produces it; the live Spark bridge builds it from Spark's state. Observations,
action masks and action decoding (:mod:`envs.spark_dag.observation`) read only this snapshot,
so a policy sees the same thing in simulation and on a real cluster.

The snapshot is a struct of arrays: one entry per *job in the system* (arrived, unfinished, in
arrival order) and one row per stage of those jobs (rows grouped by job, in the job's stage
order). Two constructors:

- ``ClusterState(...)`` with the arrays directly (what the simulator does);
- ``ClusterState.from_jobs(time_s, total_executors, free_executors, network_capacity,
  network_flows, jobs=[JobProgress(...), ...], events_pending=True)``, convenient for a bridge;
  it derives ``parents_done`` and the edge list.

Work units: ``remaining_network_s`` and ``remaining_compute_s`` are executor-seconds of the
phases not yet completed (network at full per-task bandwidth; compute includes the write phase;
a phase in progress counts in full until it ends).

Snapshots are read-only: :mod:`envs.spark_dag.observation` caches the parts that depend only
on the job set (visible rows, adjacency) on the identity of ``edges`` and ``stage_job``, so a
producer builds new arrays when jobs arrive or finish instead of editing them in place (the
simulator and ``from_jobs`` do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class JobProgress:
    """Per-job input of :meth:`ClusterState.from_jobs`; every list has one entry per stage.

    ``parents[k]`` lists stage ids (of this job) that stage ``stage_ids[k]`` depends on.
    ``running`` counts started, unfinished tasks; ``waiting`` counts tasks not yet started.
    ``opened[k]``: the scheduler already picked this stage (freed executors of the job keep
    working on opened stages without a new decision); default all False.
    """

    name: str
    arrival_s: float
    stage_ids: Sequence[int]
    parents: Sequence[Sequence[int]]
    num_tasks: Sequence[int]
    finished: Sequence[int]
    running: Sequence[int]
    waiting: Sequence[int]
    remaining_network_s: Sequence[float]
    remaining_compute_s: Sequence[float]
    executors: Sequence[int]
    opened: Sequence[bool] | None = None
    executor_limit: int = 0


@dataclass
class ClusterState:
    """Snapshot of the cluster at ``time_s``.

    Cluster fields: ``time_s``; ``total_executors`` (E); ``free_executors`` (idle slots);
    ``network_capacity`` (full-rate network phases the network carries at once, see
    :class:`envs.spark_dag.workload.ClusterSpec`); ``network_flows`` (tasks now in their network
    phase); ``events_pending`` (something is running or a job will still arrive, so waiting
    is meaningful).

    Job arrays, shape ``(J,)``: ``job_names``, ``job_arrival_s``, ``job_executors`` (executors
    held, including ones in moving delay or warm-up), ``job_executor_limit`` (the cap set by the
    last decision for the job, 0 = none yet).

    Stage arrays, shape ``(N,)``: ``stage_job`` (index into the job arrays; rows of one job are
    contiguous), ``stage_id`` (the ``Stage.id``), ``stage_num_tasks``, ``stage_finished``,
    ``stage_running``, ``stage_waiting`` (finished + running + waiting = num_tasks),
    ``stage_remaining_network_s``, ``stage_remaining_compute_s``, ``stage_executors``,
    ``stage_parents_done`` (every parent stage finished), ``stage_opened``.

    ``edges``: int array ``(M, 2)`` of stage rows ``(parent_row, child_row)``.
    ``stage_height`` (optional, ``(N,)``): see :meth:`heights`; producers that know the static
    DAG pass it to save work. ``stage_committed`` (optional): executors committed to a stage
    and not yet running one of its tasks (moving to the job or waiting for parents; counted in
    ``stage_executors``). ``stage_schedulable`` (optional): rows a decision may pick; default
    parents done and tasks neither started nor committed; the simulator also allows rows whose
    parents launched all their tasks (its ``commit_when`` rule). ``stage_task_s`` (optional):
    expected duration of one task. ``job_free_executors`` (optional, ``(J,)``): free
    executors that still belong to each job (freed by it, not yet given elsewhere; counted in
    ``free_executors``, not in ``job_executors``).
    """

    time_s: float
    total_executors: int
    free_executors: int
    network_capacity: float
    network_flows: int
    events_pending: bool
    job_names: list[str]
    job_arrival_s: np.ndarray
    job_executors: np.ndarray
    job_executor_limit: np.ndarray
    stage_job: np.ndarray
    stage_id: np.ndarray
    stage_num_tasks: np.ndarray
    stage_finished: np.ndarray
    stage_running: np.ndarray
    stage_waiting: np.ndarray
    stage_remaining_network_s: np.ndarray
    stage_remaining_compute_s: np.ndarray
    stage_executors: np.ndarray
    stage_parents_done: np.ndarray
    stage_opened: np.ndarray
    edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    stage_height: np.ndarray | None = None
    stage_committed: np.ndarray | None = None
    stage_schedulable: np.ndarray | None = None
    stage_task_s: np.ndarray | None = None
    job_free_executors: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.job_free_executors is None:
            self.job_free_executors = np.zeros(self.num_jobs, dtype=np.int64)
        if self.stage_committed is None:
            self.stage_committed = np.zeros(self.num_stages, dtype=np.int64)
        if self.stage_schedulable is None:
            self.stage_schedulable = self.stage_parents_done & (
                self.stage_waiting - self.stage_committed > 0)

    def heights(self) -> np.ndarray:
        """``stage_height``: edges on the longest path from each row down to a sink of its job
        (0 for sinks); derived from ``edges`` when not given, then cached."""
        if self.stage_height is None:
            height = np.zeros(self.num_stages, dtype=np.int64)
            if self.edges.shape[0]:
                parents, children = self.edges[:, 0], self.edges[:, 1]
                for _ in range(self.num_stages):
                    updated = height.copy()
                    np.maximum.at(updated, parents, height[children] + 1)
                    if np.array_equal(updated, height):
                        break
                    height = updated
            self.stage_height = height
        return self.stage_height

    @property
    def num_jobs(self) -> int:
        return len(self.job_names)

    @property
    def num_stages(self) -> int:
        return int(self.stage_job.shape[0])

    def stage_positions(self) -> np.ndarray:
        """Each row's position within its job (0 for the job's first stage row); cached."""
        cached = self.__dict__.get("_positions")
        if cached is not None and cached.shape[0] == self.num_stages:
            return cached
        if self.num_stages == 0:
            positions = np.zeros(0, dtype=np.int64)
        else:
            starts = np.searchsorted(self.stage_job, np.arange(self.num_jobs))
            positions = np.arange(self.num_stages) - starts[self.stage_job]
        self.__dict__["_positions"] = positions
        return positions

    @property
    def stage_runnable(self) -> np.ndarray:
        """Rows a decision may pick (``stage_schedulable``)."""
        return self.stage_schedulable

    @property
    def stage_unlaunched(self) -> np.ndarray:
        """Tasks neither started nor committed to an executor."""
        return self.stage_waiting - self.stage_committed

    @classmethod
    def from_jobs(cls, time_s: float, total_executors: int, free_executors: int,
                  network_capacity: float, network_flows: int, jobs: Sequence[JobProgress],
                  events_pending: bool = True) -> ClusterState:
        """Build a snapshot from per-job lists (stage order within a job is kept)."""
        rows: dict[str, list] = {k: [] for k in (
            "job", "id", "num", "fin", "run", "wait", "net", "comp", "exe", "open")}
        edges = []
        finished_by_row: list[bool] = []
        parent_rows_by_row: list[list[int]] = []
        for j, job in enumerate(jobs):
            n = len(job.stage_ids)
            for name in ("parents", "num_tasks", "finished", "running", "waiting",
                         "remaining_network_s", "remaining_compute_s", "executors"):
                if len(getattr(job, name)) != n:
                    raise ValueError(f"job {job.name!r}: {name} has {len(getattr(job, name))} "
                                     f"entries, expected {n} (one per stage)")
            base = len(rows["job"])
            row_of = {int(sid): base + k for k, sid in enumerate(job.stage_ids)}
            opened = job.opened if job.opened is not None else [False] * n
            for k, sid in enumerate(job.stage_ids):
                rows["job"].append(j)
                rows["id"].append(int(sid))
                rows["num"].append(int(job.num_tasks[k]))
                rows["fin"].append(int(job.finished[k]))
                rows["run"].append(int(job.running[k]))
                rows["wait"].append(int(job.waiting[k]))
                rows["net"].append(float(job.remaining_network_s[k]))
                rows["comp"].append(float(job.remaining_compute_s[k]))
                rows["exe"].append(int(job.executors[k]))
                rows["open"].append(bool(opened[k]))
                finished_by_row.append(int(job.finished[k]) >= int(job.num_tasks[k]))
                try:
                    parent_rows = [row_of[int(p)] for p in job.parents[k]]
                except KeyError as error:
                    raise ValueError(f"job {job.name!r} stage {sid}: unknown parent "
                                     f"{error.args[0]}") from None
                parent_rows_by_row.append(parent_rows)
                edges += [(p, base + k) for p in parent_rows]
        parents_done = [all(finished_by_row[p] for p in prs) for prs in parent_rows_by_row]
        job_exec = np.array([sum(int(e) for e in job.executors) for job in jobs], dtype=np.int64)

        def ints(key: str) -> np.ndarray:
            return np.array(rows[key], dtype=np.int64)

        return cls(
            time_s=float(time_s), total_executors=int(total_executors),
            free_executors=int(free_executors), network_capacity=float(network_capacity),
            network_flows=int(network_flows), events_pending=bool(events_pending),
            job_names=[job.name for job in jobs],
            job_arrival_s=np.array([job.arrival_s for job in jobs], dtype=np.float64),
            job_executors=job_exec,
            job_executor_limit=np.array([job.executor_limit for job in jobs], dtype=np.int64),
            stage_job=ints("job"), stage_id=ints("id"), stage_num_tasks=ints("num"),
            stage_finished=ints("fin"), stage_running=ints("run"), stage_waiting=ints("wait"),
            stage_remaining_network_s=np.array(rows["net"], dtype=np.float64),
            stage_remaining_compute_s=np.array(rows["comp"], dtype=np.float64),
            stage_executors=ints("exe"), stage_parents_done=np.array(parents_done, dtype=bool),
            stage_opened=np.array(rows["open"], dtype=bool),
            edges=np.array(edges, dtype=np.int64).reshape(-1, 2),
        )

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        n = self.num_stages
        for name in ("stage_id", "stage_num_tasks", "stage_finished", "stage_running",
                     "stage_waiting", "stage_remaining_network_s", "stage_remaining_compute_s",
                     "stage_executors", "stage_parents_done", "stage_opened"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"ClusterState.{name}: shape {getattr(self, name).shape}, "
                                 f"expected ({n},)")
        for name in ("job_arrival_s", "job_executors", "job_executor_limit"):
            if getattr(self, name).shape != (self.num_jobs,):
                raise ValueError(f"ClusterState.{name}: expected ({self.num_jobs},)")
        if n and (np.any(np.diff(self.stage_job) < 0) or self.stage_job.max() >= self.num_jobs):
            raise ValueError("ClusterState.stage_job: rows must be grouped by job, in job order")
        total = self.stage_finished + self.stage_running + self.stage_waiting
        if np.any(total != self.stage_num_tasks):
            row = int(np.argmax(total != self.stage_num_tasks))
            raise ValueError(f"ClusterState: stage row {row}: finished + running + waiting "
                             f"!= num_tasks")
        if not 0 <= self.free_executors <= self.total_executors:
            raise ValueError(f"ClusterState.free_executors={self.free_executors} outside "
                             f"0..{self.total_executors}")
        if int(self.job_executors.sum()) + self.free_executors > self.total_executors:
            raise ValueError("ClusterState: held + free executors exceed total_executors")
