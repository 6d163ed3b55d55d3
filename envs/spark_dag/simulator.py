"""Event-driven simulator of the Spark DAG shop (the one model every consumer reads).

Timing rules (the env docstring and docs/spark_dag.md state them for users):

- A task holds one executor from its start to its end: optional delay (warm-up ``warmup_s`` if
  the executor's previous task was of another job or it never ran one, plus ``moving_delay_s``
  if that previous task was of another job), then its network phase, then compute + write.
- Network phases share the capacity ``C`` by processor sharing: with ``n`` phases active each
  progresses at ``min(1, C / n)`` of full speed. Implemented exactly with a virtual clock ``V``
  (``dV/dt = min(1, C / n)``): a phase of ``w`` seconds started at ``V0`` ends when
  ``V = V0 + w``, so a change of ``n`` never re-keys the heap.
- A stage is runnable when every parent stage has finished all its tasks.
- A decision ``apply(stage, cap)`` sets the job's executor cap, opens the stage and starts
  ``min(free, cap - held, unstarted tasks)`` of its tasks on free executors (executors whose
  previous task was of this job first, then fresh ones, then the rest).
- An executor that ends a task continues, without a decision and without delay, on the next
  unstarted task of the same stage, else of another opened runnable stage of its job (earliest
  opened first), while its job holds no more than its cap; otherwise it returns to the free
  pool.
- Decisions are requested only after events that change the free pool or the runnable set
  (arrival, an executor returning to the pool, a stage becoming runnable, a job finishing), and
  only while an executor is free and a stage is runnable.

Per-task data live in flat numpy arrays (one entry per task of the whole workload); the event
loop touches only scalars and two heaps, no per-task Python objects.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envs.spark_dag.state import ClusterState
from envs.spark_dag.workload import ClusterSpec, Job

_EPS = 1e-9
_ARRIVAL, _DELAY_END, _TASK_END = 0, 1, 2


@dataclass
class TaskRecord:
    """Per-task timeline (global task order: jobs by arrival, stages, tasks), NaN if not run."""

    executor: np.ndarray
    start_s: np.ndarray
    network_start_s: np.ndarray
    network_end_s: np.ndarray
    end_s: np.ndarray


class DagShopSimulator:
    """Simulates ``jobs`` on ``cluster``; drive it with :meth:`run_until_decision`,
    :meth:`state` and :meth:`apply` (or :meth:`wait`)."""

    def __init__(self, jobs: Sequence[Job], cluster: ClusterSpec, record: bool = False) -> None:
        if not jobs:
            raise ValueError("simulator: the workload has no jobs")
        order = sorted(range(len(jobs)), key=lambda i: (jobs[i].arrival_s, i))
        self.jobs = [jobs[i] for i in order]
        self.cluster = cluster
        self.num_executors = cluster.num_executors
        self.capacity = float(cluster.network_capacity)

        stage_job, stage_num, stage_offset, stage_ids = [], [], [], []
        job_first_stage, net_parts, local_parts = [], [], []
        edges: list[tuple[int, int]] = []
        offset = 0
        for j, job in enumerate(self.jobs):
            base = len(stage_job)
            job_first_stage.append(base)
            for stage in job.stages:
                stage_job.append(j)
                stage_num.append(stage.num_tasks)
                stage_offset.append(offset)
                stage_ids.append(stage.id)
                offset += stage.num_tasks
                net_parts.append(stage.network_s)
                local_parts.append(stage.local_s)
            edges += [(base + p, base + k) for k, parents in enumerate(job.parent_positions())
                      for p in parents]
        job_first_stage.append(len(stage_job))
        self.num_stages_total = len(stage_job)
        self.num_tasks_total = offset
        self.task_network = np.concatenate(net_parts)
        self.task_local = np.concatenate(local_parts)
        self._net = self.task_network.tolist()
        self._local = self.task_local.tolist()
        self.stage_job = np.array(stage_job, dtype=np.int64)
        self.stage_num = np.array(stage_num, dtype=np.int64)
        self.stage_id = np.array(stage_ids, dtype=np.int64)
        self._stage_job = stage_job
        self._stage_num = stage_num
        self._stage_offset = stage_offset
        self.job_first_stage = job_first_stage
        self.edges = np.array(edges, dtype=np.int64).reshape(-1, 2)
        self._children: list[list[int]] = [[] for _ in stage_job]
        for parent, child in edges:
            self._children[parent].append(child)
        height = [0] * self.num_stages_total
        for j, job in enumerate(self.jobs):
            base = job_first_stage[j]
            for position in reversed(job.topological_order):
                stage = base + position
                height[stage] = max((height[c] + 1 for c in self._children[stage]), default=0)
        self.stage_height = np.array(height, dtype=np.int64)
        num_parents = np.zeros(self.num_stages_total, dtype=np.int64)
        for _parent, child in edges:
            num_parents[child] += 1

        # mutable per-stage state (numpy: read as whole arrays at every decision)
        self.started = np.zeros(self.num_stages_total, dtype=np.int64)
        self.finished = np.zeros(self.num_stages_total, dtype=np.int64)
        self.pending_parents = num_parents
        self.opened = np.zeros(self.num_stages_total, dtype=bool)
        self.remaining_network = np.array([float(s.sum()) for s in net_parts])
        self.remaining_local = np.array([float(s.sum()) for s in local_parts])
        njobs = len(self.jobs)
        self.job_active = np.zeros(njobs, dtype=bool)
        self.job_executors = np.zeros(njobs, dtype=np.int64)
        self.job_limit = np.zeros(njobs, dtype=np.int64)
        self.job_stages_left = [job_first_stage[j + 1] - job_first_stage[j] for j in range(njobs)]
        self.job_completion_s = np.full(njobs, np.nan)
        self.job_arrival_s = np.array([job.arrival_s for job in self.jobs])
        self._job_open: list[list[int]] = [[] for _ in range(njobs)]

        E = self.num_executors
        self._exec_task = [-1] * E
        self._exec_stage = [-1] * E
        self._exec_last_job = [-1] * E
        self._free: dict[int, list[int]] = {-1: list(range(E - 1, -1, -1))}
        self.free_count = E

        self.time_s = 0.0
        self._virtual = 0.0
        self._flows = 0
        self._events: list[tuple[float, int, int, int]] = []
        self._net_events: list[tuple[float, int, int]] = []
        self._seq = 0
        for j, job in enumerate(self.jobs):
            self._push(job.arrival_s, _ARRIVAL, j)
        self.arrivals_pending = njobs
        self.jobs_in_system = 0
        self.jobs_done = 0
        self.runnable_count = 0
        self.running_tasks = 0
        self.job_seconds = 0.0
        self.dirty = False
        self.moves = 0
        self.record: TaskRecord | None = None
        if record:
            n = self.num_tasks_total
            self.record = TaskRecord(np.full(n, -1, dtype=np.int64), *(np.full(n, np.nan)
                                                                     for _ in range(4)))
        self.peak_flows = 0
        self._jobset_version = 0
        self._layout_version = -1

    # ------------------------------------------------------------------ queries
    @property
    def done(self) -> bool:
        return self.jobs_done == len(self.jobs)

    @property
    def events_pending(self) -> bool:
        return self.running_tasks > 0 or self.arrivals_pending > 0

    @property
    def makespan_s(self) -> float:
        return float(np.nanmax(self.job_completion_s)) if self.jobs_done else 0.0

    @property
    def mean_jct_s(self) -> float:
        done = ~np.isnan(self.job_completion_s)
        if not done.any():
            return float("nan")
        return float(np.mean(self.job_completion_s[done] - self.job_arrival_s[done]))

    def global_stage(self, job_index: int, stage_id: int) -> int:
        """Global stage index of ``stage_id`` of the ``job_index``-th job *in the system*."""
        job = int(np.flatnonzero(self.job_active)[job_index])
        first, last = self.job_first_stage[job], self.job_first_stage[job + 1]
        matches = np.flatnonzero(self.stage_id[first:last] == stage_id)
        if matches.size != 1:
            raise KeyError(f"job {self.jobs[job].name!r} has no stage {stage_id}")
        return first + int(matches[0])

    def state(self) -> ClusterState:
        """Snapshot for observations (jobs in the system in arrival order)."""
        if self._layout_version != self._jobset_version:
            self._layout = self._row_layout()
            self._layout_version = self._jobset_version
        active_jobs, names, rows, stage_job, stage_id, stage_num, edges, height = self._layout
        started = self.started[rows]
        finished = self.finished[rows]
        running = started - finished
        return ClusterState(
            time_s=self.time_s, total_executors=self.num_executors,
            free_executors=self.free_count, network_capacity=self.capacity,
            network_flows=self._flows, events_pending=self.events_pending,
            job_names=names,
            job_arrival_s=self.job_arrival_s[active_jobs],
            job_executors=self.job_executors[active_jobs].copy(),
            job_executor_limit=self.job_limit[active_jobs].copy(),
            stage_job=stage_job, stage_id=stage_id,
            stage_num_tasks=stage_num, stage_finished=finished,
            stage_running=running, stage_waiting=stage_num - started,
            stage_remaining_network_s=self.remaining_network[rows],
            stage_remaining_compute_s=self.remaining_local[rows],
            stage_executors=running, stage_parents_done=self.pending_parents[rows] == 0,
            stage_opened=self.opened[rows].copy(), edges=edges, stage_height=height,
        )

    def _row_layout(self) -> tuple:
        """Rows of the jobs in the system; changes only when a job arrives or finishes."""
        active_jobs = np.flatnonzero(self.job_active)
        rank = np.full(len(self.jobs), -1, dtype=np.int64)
        rank[active_jobs] = np.arange(active_jobs.size)
        rows = np.flatnonzero(self.job_active[self.stage_job])
        row_of = np.full(self.num_stages_total, -1, dtype=np.int64)
        row_of[rows] = np.arange(rows.size)
        edges = self.edges
        if edges.shape[0]:
            edges = row_of[edges[self.job_active[self.stage_job[edges[:, 0]]]]]
        return (active_jobs, [self.jobs[j].name for j in active_jobs], rows,
                rank[self.stage_job[rows]], self.stage_id[rows], self.stage_num[rows], edges,
                self.stage_height[rows])

    # ------------------------------------------------------------------ control
    def apply(self, stage: int, cap: int) -> int:
        """Open global stage ``stage``, cap its job at ``cap`` executors and start tasks on free
        executors; returns how many started. Raises ``ValueError`` if the stage is not
        runnable."""
        job = self._stage_job[stage]
        if (not self.job_active[job] or self.pending_parents[stage] > 0
                or self.started[stage] >= self._stage_num[stage]):
            raise ValueError(f"stage {int(self.stage_id[stage])} of job {self.jobs[job].name!r} "
                             f"is not runnable")
        self.job_limit[job] = cap
        if not self.opened[stage]:
            self.opened[stage] = True
            self._job_open[job].append(stage)
        count = min(self.free_count, cap - int(self.job_executors[job]),
                    self._stage_num[stage] - int(self.started[stage]))
        for _ in range(max(count, 0)):
            executor = self._take_free(job)
            self.job_executors[job] += 1
            self._start_task(executor, stage)
        return max(count, 0)

    def wait(self) -> None:
        """Do nothing until the next decision-relevant event."""
        self.dirty = False

    def run_until_decision(self) -> None:
        """Process events until a decision is needed or every job is done."""
        total_jobs = len(self.jobs)
        while self.jobs_done < total_jobs and not (
                self.dirty and self.free_count > 0 and self.runnable_count > 0):
            if not self._events and not self._net_events:
                if self.free_count > 0 and self.runnable_count > 0:
                    self.dirty = True  # nothing left to wait for: the scheduler must act
                    return
                raise RuntimeError("simulator: no events pending but jobs are unfinished")
            self._process_next_instant()

    # ------------------------------------------------------------------ internals
    def _push(self, time_s: float, kind: int, payload: int) -> None:
        self._seq += 1
        heapq.heappush(self._events, (time_s, self._seq, kind, payload))

    def _process_next_instant(self) -> None:
        events, net_events = self._events, self._net_events
        next_time = events[0][0] if events else math.inf
        flows = self._flows
        rate = 1.0 if flows <= self.capacity else self.capacity / flows
        if net_events:
            net_time = self.time_s + (net_events[0][0] - self._virtual) / rate
            if net_time < next_time:
                next_time = net_time
        delta = next_time - self.time_s
        if delta > 0:
            if flows:
                self._virtual += delta * rate
            self.job_seconds += delta * self.jobs_in_system
            self.time_s = next_time
        while True:
            if events and events[0][0] <= self.time_s + _EPS:
                _, _, kind, payload = heapq.heappop(events)
                if kind == _TASK_END:
                    self._task_end(payload)
                elif kind == _DELAY_END:
                    self._begin_network(payload)
                else:
                    self._arrive(payload)
            elif net_events and net_events[0][0] <= self._virtual + _EPS:
                _, _, executor = heapq.heappop(net_events)
                self._flows -= 1
                task = self._exec_task[executor]
                self.remaining_network[self._exec_stage[executor]] -= self._net[task]
                if self.record is not None:
                    self.record.network_end_s[task] = self.time_s
                self._begin_local(executor)
            else:
                return

    def _arrive(self, job: int) -> None:
        self.arrivals_pending -= 1
        self.job_active[job] = True
        self._jobset_version += 1
        self.jobs_in_system += 1
        for stage in range(self.job_first_stage[job], self.job_first_stage[job + 1]):
            if self.pending_parents[stage] == 0:
                self.runnable_count += 1
        self.dirty = True

    def _take_free(self, job: int) -> int:
        free = self._free
        key = job if job in free else (-1 if -1 in free else next(iter(free), None))
        if key is None:
            raise RuntimeError("simulator: no free executor")
        pool = free[key]
        executor = pool.pop()
        if not pool:
            del free[key]
        self.free_count -= 1
        return executor

    def _start_task(self, executor: int, stage: int) -> None:
        index = int(self.started[stage])
        task = self._stage_offset[stage] + index
        self.started[stage] = index + 1
        if index + 1 == self._stage_num[stage]:
            self.runnable_count -= 1
        self.running_tasks += 1
        self._exec_task[executor] = task
        self._exec_stage[executor] = stage
        job = self._stage_job[stage]
        delay = 0.0
        last = self._exec_last_job[executor]
        if last != job:
            delay = self.cluster.warmup_s
            if last != -1:
                delay += self.cluster.moving_delay_s
                self.moves += 1
        self._exec_last_job[executor] = job
        if self.record is not None:
            self.record.executor[task] = executor
            self.record.start_s[task] = self.time_s
        if delay > 0:
            self._push(self.time_s + delay, _DELAY_END, executor)
        else:
            self._begin_network(executor)

    def _begin_network(self, executor: int) -> None:
        task = self._exec_task[executor]
        work = self._net[task]
        if self.record is not None:
            self.record.network_start_s[task] = self.time_s
        if work > 0:
            self._flows += 1
            if self._flows > self.peak_flows:
                self.peak_flows = self._flows
            self._seq += 1
            heapq.heappush(self._net_events, (self._virtual + work, self._seq, executor))
        else:
            if self.record is not None:
                self.record.network_end_s[task] = self.time_s
            self._begin_local(executor)

    def _begin_local(self, executor: int) -> None:
        self._push(self.time_s + self._local[self._exec_task[executor]], _TASK_END, executor)

    def _task_end(self, executor: int) -> None:
        task, stage = self._exec_task[executor], self._exec_stage[executor]
        job = self._stage_job[stage]
        self.running_tasks -= 1
        self.remaining_local[stage] -= self._local[task]
        if self.record is not None:
            self.record.end_s[task] = self.time_s
        finished = int(self.finished[stage]) + 1
        self.finished[stage] = finished
        if finished == self._stage_num[stage]:
            self._stage_done(stage, job)
        if not self.job_active[job]:
            self._release(executor, job)
            return
        within_cap = self.job_executors[job] <= self.job_limit[job]
        if within_cap and self.started[stage] < self._stage_num[stage]:
            self._start_task(executor, stage)
            return
        if within_cap:
            opened = self._job_open[job]
            while opened and self.started[opened[0]] >= self._stage_num[opened[0]]:
                opened.pop(0)
            for other in opened:
                if self.pending_parents[other] == 0:
                    self._start_task(executor, other)
                    return
        self._release(executor, job)

    def _release(self, executor: int, job: int) -> None:
        self.job_executors[job] -= 1
        self._exec_task[executor] = -1
        self._exec_stage[executor] = -1
        self._free.setdefault(job, []).append(executor)
        self.free_count += 1
        self.dirty = True

    def _stage_done(self, stage: int, job: int) -> None:
        for child in self._children[stage]:
            self.pending_parents[child] -= 1
            if self.pending_parents[child] == 0:
                self.runnable_count += 1
                self.dirty = True
        self.job_stages_left[job] -= 1
        if self.job_stages_left[job] == 0:
            self.job_active[job] = False
            self._jobset_version += 1
            self.job_completion_s[job] = self.time_s
            self.jobs_in_system -= 1
            self.jobs_done += 1
            self.dirty = True
