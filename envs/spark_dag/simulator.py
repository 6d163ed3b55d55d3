"""Event-driven simulator of the Spark DAG shop (the one model every consumer reads).

Timing rules (defaults follow decima-sim and spark-sched-sim; each rule is a
:class:`~envs.spark_dag.workload.ClusterSpec` field, so the older rules stay reachable with
``ClusterSpec.legacy()``; the env docstring and docs/spark_dag.md state them for users):

- Executors start in a shared pool. A decision ``apply(stage, cap)`` sets the job's executor
  cap (any integer 1..E), opens the stage and *commits* ``min(free, cap - held, tasks not yet
  launched)`` free executors to it: first free executors of this job, then pool ones, then
  free executors of other jobs. An executor that does not belong to the job moves first
  (``moving_delay_s``; leaving the pool counts as a move when ``move_from_pool``).
- A stage is *schedulable* when it has tasks not yet launched (started or committed) and
  every parent has launched all its tasks (``commit_when="parents_launched"``) or finished
  (``"parents_finished"``); it is *runnable* once its parents finished. An executor committed
  to a stage that is not yet runnable waits inside the job, and starts when it becomes so.
- Task durations: with ``duration_model="waves"`` and a stage that has measured waves, the
  duration is drawn at the task's start from the waves entry nearest the number of executors
  the job holds (between two recorded counts ``a < n < b`` the lower with probability
  ``(n - a) / (b - a)``, as decima-sim), from ``fresh`` if the executor's previous task was not
  of this job, ``rest_wave`` if it was of this stage, else ``first_wave`` (empty lists fall
  back as decima-sim: fresh -> first wave + ``warmup_s``, rest -> first, first -> fresh).
  Otherwise the stage's per-task arrays give the duration, plus ``warmup_s`` when the executor
  is new to the job or (``warmup_scope="stage"``) to the stage.
- A task holds its executor for its whole duration: first its network phase (the share
  ``network_fraction`` of a drawn duration, or ``network_s``), then compute + write. Network
  phases share the capacity ``C`` by processor sharing: with ``n`` active each progresses at
  ``min(1, C / n) / (1 + beta * (n - 1))`` (``beta = network_flow_overhead``, 0 by default:
  work-conserving); implemented exactly with a virtual clock ``V`` (``dV/dt`` that rate), so a
  change of ``n`` never re-keys the heap.
- An executor that ends a task continues, without a decision, on the next unlaunched task of
  the same stage, else of another opened schedulable stage of its job (earliest opened first;
  it waits there if that stage is not yet runnable), while its job holds no more than its
  cap; otherwise it is freed: it stays with its job while the job has tasks left to launch,
  else returns to the pool.
- Decisions are requested only after events that change the free executors or the
  schedulable set (arrival, an executor freed, a stage becoming schedulable, a job finishing),
  and only while an executor is free and a stage is schedulable.

Per-task data live in flat numpy arrays (one entry per task of the whole workload); the event
loop touches only scalars and Python lists, draws durations from a pre-drawn buffer of
uniforms, and schedules a task without a network phase with one heap push.
"""

from __future__ import annotations

import functools
import heapq
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envs.spark_dag.state import ClusterState
from envs.spark_dag.workload import ClusterSpec, Job, Stage

_EPS = 1e-9
_ARRIVAL, _MOVE_END, _TASK_END = 0, 1, 2
_POOL = -1
_UNIFORM_BATCH = 1 << 16


@dataclass
class TaskRecord:
    """Per-task timeline (global task order: jobs by arrival, stages, tasks), NaN if not run."""

    executor: np.ndarray
    start_s: np.ndarray
    network_start_s: np.ndarray
    network_end_s: np.ndarray
    end_s: np.ndarray


@functools.lru_cache(maxsize=256)
def _count_choices(counts: tuple[int, ...], max_held: int) -> list[tuple[int, int, float]]:
    """For each number of executors held (0..max_held): the indices of the recorded counts
    around it and the probability of the lower one (decima-sim's interpolation)."""
    choices = []
    for held in range(max_held + 1):
        if held <= counts[0]:
            choices.append((0, 0, 1.0))
        elif held >= counts[-1]:
            choices.append((len(counts) - 1, len(counts) - 1, 1.0))
        else:
            high = next(k for k, count in enumerate(counts) if count >= held)
            low_count, high_count = counts[high - 1], counts[high]
            probability = 0.0 if high_count == held else (held - low_count) / (
                high_count - low_count)
            choices.append((high - 1, high, probability))
    return choices


class _WaveTable:
    """A stage's measured durations: per recorded executor count, the three wave lists."""

    __slots__ = ("first", "rest", "fresh", "fraction", "choices", "mean_warm_s")

    def __init__(self, waves: dict, warmup_s: float, num_executors: int) -> None:
        counts = tuple(sorted(waves))
        self.choices = _count_choices(counts, num_executors)
        self.first, self.rest, self.fresh, self.fraction = [], [], [], []
        for count in counts:
            entry = waves[count]
            first, rest, fresh = list(entry.first_wave), list(entry.rest_wave), list(entry.fresh)
            if not fresh:
                fresh = [d + warmup_s for d in (first or rest)]
            self.first.append(first or fresh)
            self.rest.append(rest or first or fresh)
            self.fresh.append(fresh)
            self.fraction.append(entry.network_fraction)
        self.mean_warm_s = sum(self.first[-1] + self.rest[-1]) / len(self.first[-1] +
                                                                    self.rest[-1])


# Templates are shared by many jobs of a sequence: build each stage's table once.
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _wave_table(stage: Stage, cluster: ClusterSpec) -> _WaveTable:
    key = (cluster.warmup_s, cluster.num_executors)
    cached = _TABLES.get(stage)
    if cached is None or cached[0] != key:
        cached = (key, _WaveTable(stage.waves, *key))
        _TABLES[stage] = cached
    return cached[1]


class DagShopSimulator:
    """Simulates ``jobs`` on ``cluster``; drive it with :meth:`run_until_decision`,
    :meth:`state` and :meth:`apply` (or :meth:`wait`). ``rng`` draws task durations (waves);
    pass the env's ``np_random`` for reproducible episodes."""

    def __init__(self, jobs: Sequence[Job], cluster: ClusterSpec, record: bool = False,
                 rng: np.random.Generator | None = None) -> None:
        if not jobs:
            raise ValueError("simulator: the workload has no jobs")
        order = sorted(range(len(jobs)), key=lambda i: (jobs[i].arrival_s, i))
        self.jobs = [jobs[i] for i in order]
        self.cluster = cluster
        self.num_executors = cluster.num_executors
        self.capacity = float(cluster.network_capacity)
        self.flow_overhead = float(cluster.network_flow_overhead)
        self._rng = rng if rng is not None else np.random.default_rng(0)
        self._uniform: list[float] = []
        self._uniform_next = 0
        self._commit_on_launch = cluster.commit_when == "parents_launched"
        self._stage_warmup = cluster.warmup_scope == "stage"

        stage_job, stage_num, stage_offset, stage_ids, tables = [], [], [], [], []
        job_first_stage, net_parts, local_parts = [], [], []
        edges: list[tuple[int, int]] = []
        offset = 0
        use_waves = cluster.duration_model == "waves"
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
                tables.append(_wave_table(stage, cluster)
                              if use_waves and stage.waves else None)
            edges += [(base + p, base + k) for k, parents in enumerate(job.parent_positions())
                      for p in parents]
        job_first_stage.append(len(stage_job))
        self.num_stages_total = len(stage_job)
        self.num_tasks_total = offset
        self._tables = tables
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
        num_parents = [0] * self.num_stages_total
        for parent, child in edges:
            self._children[parent].append(child)
            num_parents[child] += 1
        height = [0] * self.num_stages_total
        for j, job in enumerate(self.jobs):
            base = job_first_stage[j]
            for position in reversed(job.topological_order):
                stage = base + position
                height[stage] = max((height[c] + 1 for c in self._children[stage]), default=0)
        self.stage_height = np.array(height, dtype=np.int64)
        # Expected work per stage (for observations): mean of the warm waves at the largest
        # recorded count, else the per-task arrays.
        expected_net, expected_local = [], []
        for k, table in enumerate(tables):
            if table is None:
                expected_net.append(float(np.sum(net_parts[k])))
                expected_local.append(float(np.sum(local_parts[k])))
            else:
                work = table.mean_warm_s * stage_num[k]
                expected_net.append(work * table.fraction[-1])
                expected_local.append(work * (1.0 - table.fraction[-1]))
        self._expected_task_s = [(n + lo) / stage_num[k] for k, (n, lo)
                                 in enumerate(zip(expected_net, expected_local, strict=True))]

        # per-stage state: Python lists in the event loop, numpy copies taken by state()
        n_stages = self.num_stages_total
        self._started = [0] * n_stages
        self._committed = [0] * n_stages
        self._finished = [0] * n_stages
        self._parents_unfinished = list(num_parents)
        self._parents_unlaunched = list(num_parents)
        self._opened = [False] * n_stages
        self._waiting_execs: list[list[int]] = [[] for _ in range(n_stages)]
        self._remaining_network = expected_net
        self._remaining_local = expected_local
        self._schedulable = [False] * n_stages
        njobs = len(self.jobs)
        self.job_active = np.zeros(njobs, dtype=bool)
        self._job_held = [0] * njobs
        self._job_cap = [0] * njobs
        self._job_unlaunched = [sum(stage_num[job_first_stage[j]:job_first_stage[j + 1]])
                                for j in range(njobs)]
        self.job_stages_left = [job_first_stage[j + 1] - job_first_stage[j] for j in range(njobs)]
        self.job_completion_s = np.full(njobs, np.nan)
        self.job_arrival_s = np.array([job.arrival_s for job in self.jobs])
        self._job_open: list[list[int]] = [[] for _ in range(njobs)]

        E = self.num_executors
        self._exec_task = [-1] * E
        self._exec_stage = [-1] * E       # stage being run or committed to
        self._exec_owner = [_POOL] * E    # job the executor belongs to (pool: -1)
        self._exec_last_stage = [-1] * E  # stage of its previous task (-1: none in this job)
        self._free: dict[int, list[int]] = {_POOL: list(range(E - 1, -1, -1))}
        self.free_count = E

        self.time_s = 0.0
        self._virtual = 0.0
        self._flows = 0
        self._events: list[tuple[float, int, int, int]] = []
        self._net_events: list[tuple[float, int, int, float]] = []  # (V end, seq, exec, local)
        self._seq = 0
        for j, job in enumerate(self.jobs):
            self._push(job.arrival_s, _ARRIVAL, j)
        self.arrivals_pending = njobs
        self.jobs_in_system = 0
        self.jobs_done = 0
        self.schedulable_count = 0
        self.running_tasks = 0
        self.in_transit = 0
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
        return self.running_tasks > 0 or self.arrivals_pending > 0 or self.in_transit > 0

    @property
    def makespan_s(self) -> float:
        return float(np.nanmax(self.job_completion_s)) if self.jobs_done else 0.0

    @property
    def mean_jct_s(self) -> float:
        done = ~np.isnan(self.job_completion_s)
        if not done.any():
            return float("nan")
        return float(np.mean(self.job_completion_s[done] - self.job_arrival_s[done]))

    @property
    def job_executors(self) -> np.ndarray:
        """Executors each job holds (running, committed or moving to it)."""
        return np.array(self._job_held, dtype=np.int64)

    def global_stage(self, job_index: int, stage_id: int) -> int:
        """Global stage index of ``stage_id`` of the ``job_index``-th job *in the system*."""
        job = int(self._layout_rows()[0][job_index])
        first, last = self.job_first_stage[job], self.job_first_stage[job + 1]
        matches = np.flatnonzero(self.stage_id[first:last] == stage_id)
        if matches.size != 1:
            raise KeyError(f"job {self.jobs[job].name!r} has no stage {stage_id}")
        return first + int(matches[0])

    def state(self) -> ClusterState:
        """Snapshot for observations and schedulers (jobs in the system in arrival order)."""
        active_jobs, names, rows, stage_job, stage_id, stage_num, edges, height = \
            self._layout_rows()
        pick = rows.tolist()
        started = np.array([self._started[r] for r in pick], dtype=np.int64)
        finished = np.array([self._finished[r] for r in pick], dtype=np.int64)
        committed = np.array([self._committed[r] for r in pick], dtype=np.int64)
        unfinished = np.array([self._parents_unfinished[r] for r in pick], dtype=np.int64)
        running = started - finished
        held = [self._job_held[j] for j in active_jobs.tolist()]
        return ClusterState(
            time_s=self.time_s, total_executors=self.num_executors,
            free_executors=self.free_count, network_capacity=self.capacity,
            network_flows=self._flows, events_pending=self.events_pending,
            job_names=names,
            job_arrival_s=self.job_arrival_s[active_jobs],
            job_executors=np.array(held, dtype=np.int64),
            job_executor_limit=np.array([self._job_cap[j] for j in active_jobs.tolist()],
                                        dtype=np.int64),
            stage_job=stage_job, stage_id=stage_id,
            stage_num_tasks=stage_num, stage_finished=finished,
            stage_running=running, stage_waiting=stage_num - started,
            stage_remaining_network_s=np.array([self._remaining_network[r] for r in pick]),
            stage_remaining_compute_s=np.array([self._remaining_local[r] for r in pick]),
            stage_executors=running + committed, stage_parents_done=unfinished == 0,
            stage_opened=np.array([self._opened[r] for r in pick], dtype=bool),
            edges=edges, stage_height=height,
            stage_committed=committed,
            stage_schedulable=np.array([self._schedulable[r] for r in pick], dtype=bool),
            stage_task_s=np.array([self._expected_task_s[r] for r in pick]),
            job_free_executors=np.array([len(self._free.get(j, ())) for j in active_jobs.tolist()],
                                        dtype=np.int64),
        )

    def _layout_rows(self) -> tuple:
        """Rows of the jobs in the system; recomputed only when a job arrives or finishes."""
        if self._layout_version != self._jobset_version:
            active_jobs = np.flatnonzero(self.job_active)
            rank = np.full(len(self.jobs), -1, dtype=np.int64)
            rank[active_jobs] = np.arange(active_jobs.size)
            rows = np.flatnonzero(self.job_active[self.stage_job])
            row_of = np.full(self.num_stages_total, -1, dtype=np.int64)
            row_of[rows] = np.arange(rows.size)
            edges = self.edges
            if edges.shape[0]:
                edges = row_of[edges[self.job_active[self.stage_job[edges[:, 0]]]]]
            self._layout = (active_jobs, [self.jobs[j].name for j in active_jobs], rows,
                            rank[self.stage_job[rows]], self.stage_id[rows], self.stage_num[rows],
                            edges, self.stage_height[rows])
            self._layout_version = self._jobset_version
        return self._layout

    def grant(self, stage: int, cap: int) -> int:
        """Executors :meth:`apply` would commit now to ``stage`` with this cap."""
        job = self._stage_job[stage]
        return max(0, min(self.free_count, cap - self._job_held[job],
                          self._stage_num[stage] - self._started[stage] - self._committed[stage]))

    # ------------------------------------------------------------------ control
    def apply(self, stage: int, cap: int) -> int:
        """Open global stage ``stage``, cap its job at ``cap`` executors (1..E) and commit free
        executors to it; returns how many. Raises ``ValueError`` if the stage is not
        schedulable or the cap is out of range."""
        job = self._stage_job[stage]
        if not self.job_active[job] or not self._schedulable[stage]:
            raise ValueError(f"stage {int(self.stage_id[stage])} of job {self.jobs[job].name!r} "
                             f"is not schedulable")
        if not 1 <= cap <= self.num_executors:
            raise ValueError(f"parallelism limit {cap} outside 1..{self.num_executors}")
        self._job_cap[job] = cap
        if not self._opened[stage]:
            self._opened[stage] = True
            self._job_open[job].append(stage)
        count = self.grant(stage, cap)
        for _ in range(count):
            self._assign(self._take_free(job), stage)
        return count

    def wait(self) -> None:
        """Do nothing until the next decision-relevant event."""
        self.dirty = False

    def run_until_decision(self) -> None:
        """Process events until a decision is needed or every job is done."""
        total_jobs = len(self.jobs)
        while self.jobs_done < total_jobs and not (
                self.dirty and self.free_count > 0 and self.schedulable_count > 0):
            if not self._events and not self._net_events:
                if self.free_count > 0 and self.schedulable_count > 0:
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
        if flows > 1 and self.flow_overhead:
            rate /= 1.0 + self.flow_overhead * (flows - 1)
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
        horizon = self.time_s + _EPS
        while True:
            if events and events[0][0] <= horizon:
                _, _, kind, payload = heapq.heappop(events)
                if kind == _TASK_END:
                    self._task_end(payload)
                elif kind == _MOVE_END:
                    self.in_transit -= 1
                    self._arrive_executor(payload)
                else:
                    self._arrive(payload)
            elif net_events and net_events[0][0] <= self._virtual + _EPS:
                _, _, executor, local_s = heapq.heappop(net_events)
                self._flows -= 1
                self._network_done(executor, local_s)
            else:
                return

    def _arrive(self, job: int) -> None:
        self.arrivals_pending -= 1
        self.job_active[job] = True
        self._jobset_version += 1
        self.jobs_in_system += 1
        for stage in range(self.job_first_stage[job], self.job_first_stage[job + 1]):
            if self._parents_unlaunched[stage] == 0 and self._parents_unfinished[stage] == 0:
                self._set_schedulable(stage, True)
        self.dirty = True

    def _set_schedulable(self, stage: int, value: bool) -> None:
        if self._schedulable[stage] != value:
            self._schedulable[stage] = value
            self.schedulable_count += 1 if value else -1
            if value:
                self.dirty = True

    def _take_free(self, job: int) -> int:
        free = self._free
        key = job if job in free else (_POOL if _POOL in free else next(iter(free), None))
        if key is None:
            raise RuntimeError("simulator: no free executor")
        pool = free[key]
        executor = pool.pop()
        if not pool:
            del free[key]
        self.free_count -= 1
        return executor

    def _launch(self, stage: int) -> None:
        """One more task of ``stage`` is launched (committed or started)."""
        self._job_unlaunched[self._stage_job[stage]] -= 1
        if self._started[stage] + self._committed[stage] == self._stage_num[stage]:
            self._saturated(stage)

    def _saturated(self, stage: int) -> None:
        """Every task of ``stage`` is launched."""
        self._set_schedulable(stage, False)
        if self._commit_on_launch:
            for child in self._children[stage]:
                self._parents_unlaunched[child] -= 1
                if self._parents_unlaunched[child] == 0:
                    self._set_schedulable(child, True)

    def _assign(self, executor: int, stage: int) -> None:
        """Commit a taken free executor to ``stage`` (moving it to the job if needed)."""
        job = self._stage_job[stage]
        self._job_held[job] += 1
        self._committed[stage] += 1
        self._exec_stage[executor] = stage
        self._launch(stage)
        owner = self._exec_owner[executor]
        if owner != job:
            self._exec_owner[executor] = job
            self._exec_last_stage[executor] = -1
            if owner != _POOL or self.cluster.move_from_pool:
                self.moves += 1
                if self.cluster.moving_delay_s > 0:
                    self.in_transit += 1
                    self._push(self.time_s + self.cluster.moving_delay_s, _MOVE_END, executor)
                    return
        self._arrive_executor(executor)

    def _arrive_executor(self, executor: int) -> None:
        stage = self._exec_stage[executor]
        if self._parents_unfinished[stage] == 0:
            self._committed[stage] -= 1
            self._start_task(executor, stage)
        else:
            self._waiting_execs[stage].append(executor)

    def _start_task(self, executor: int, stage: int) -> None:
        """Start the next task of ``stage`` on ``executor`` (its launch is already counted)."""
        index = self._started[stage]
        task = self._stage_offset[stage] + index
        self._started[stage] = index + 1
        self.running_tasks += 1
        self._exec_task[executor] = task
        last = self._exec_last_stage[executor]
        table = self._tables[stage]
        if table is None:
            net = self._net[task]
            local = self._local[task]
            if last == -1 or (last != stage and self._stage_warmup):
                local += self.cluster.warmup_s
        else:
            duration, fraction = self._draw(table, stage, last)
            net = duration * fraction
            local = duration - net
        self._exec_last_stage[executor] = stage
        if self.record is not None:
            self.record.executor[task] = executor
            self.record.start_s[task] = self.time_s
            self.record.network_start_s[task] = self.time_s
        if net > 0:
            self._flows += 1
            if self._flows > self.peak_flows:
                self.peak_flows = self._flows
            self._seq += 1
            heapq.heappush(self._net_events, (self._virtual + net, self._seq, executor, local))
        else:
            if self.record is not None:
                self.record.network_end_s[task] = self.time_s
            self._push(self.time_s + local, _TASK_END, executor)

    def _draw(self, table: _WaveTable, stage: int, last: int) -> tuple[float, float]:
        """A task duration (seconds) and its network fraction, drawn as decima-sim does."""
        index = self._uniform_next
        if index + 2 > len(self._uniform):
            self._uniform = self._rng.random(_UNIFORM_BATCH).tolist()
            index = 0
        self._uniform_next = index + 2
        low, high, p_low = table.choices[self._job_held[self._stage_job[stage]]]
        k = low if self._uniform[index] < p_low else high
        if last == -1:
            samples = table.fresh[k]
        elif last == stage:
            samples = table.rest[k]
        else:
            samples = table.first[k]
        return samples[int(self._uniform[index + 1] * len(samples))], table.fraction[k]

    def _network_done(self, executor: int, local_s: float) -> None:
        task = self._exec_task[executor]
        if self.record is not None:
            self.record.network_end_s[task] = self.time_s
        self._push(self.time_s + local_s, _TASK_END, executor)

    def _task_end(self, executor: int) -> None:
        task, stage = self._exec_task[executor], self._exec_stage[executor]
        job = self._stage_job[stage]
        self.running_tasks -= 1
        num = self._stage_num[stage]
        if self._tables[stage] is None:
            self._remaining_network[stage] -= self._net[task]
            self._remaining_local[stage] -= self._local[task]
        else:
            share = 1.0 - 1.0 / (num - self._finished[stage])
            self._remaining_network[stage] *= share
            self._remaining_local[stage] *= share
        if self.record is not None:
            self.record.end_s[task] = self.time_s
        self._finished[stage] += 1
        if self._finished[stage] == num:
            self._stage_done(stage, job)
        if not self.job_active[job]:
            self._release(executor, job)
            return
        if self._job_held[job] <= self._job_cap[job]:
            launched = self._started[stage] + self._committed[stage]
            if launched < num:  # the common case, inlined: the next task of the same stage
                self._job_unlaunched[job] -= 1
                if launched + 1 == num:
                    self._saturated(stage)
                self._start_task(executor, stage)
                return
            opened = self._job_open[job]
            while opened and not self._schedulable[opened[0]]:
                opened.pop(0)
            for other in opened:
                if self._schedulable[other]:
                    self._continue(executor, other)
                    return
        self._release(executor, job)

    def _continue(self, executor: int, stage: int) -> None:
        """An executor of the job takes the next task of ``stage`` without a decision."""
        self._exec_stage[executor] = stage
        self._committed[stage] += 1
        self._launch(stage)
        self._arrive_executor(executor)

    def _release(self, executor: int, job: int) -> None:
        self._job_held[job] -= 1
        self._exec_task[executor] = -1
        self._exec_stage[executor] = -1
        if self._stage_warmup:
            self._exec_last_stage[executor] = -1  # a freed executor is fresh (decima-sim)
        if self._job_unlaunched[job] == 0 and self.cluster.move_from_pool:
            self._exec_owner[executor] = _POOL
            self._exec_last_stage[executor] = -1
            self._free.setdefault(_POOL, []).append(executor)
        else:
            self._free.setdefault(job, []).append(executor)
        self.free_count += 1
        self.dirty = True

    def _stage_done(self, stage: int, job: int) -> None:
        self._remaining_network[stage] = 0.0
        self._remaining_local[stage] = 0.0
        for child in self._children[stage]:
            self._parents_unfinished[child] -= 1
            if self._parents_unfinished[child] == 0:
                if not self._commit_on_launch:
                    self._parents_unlaunched[child] = 0
                    if self._started[child] + self._committed[child] < self._stage_num[child]:
                        self._set_schedulable(child, True)
                waiting = self._waiting_execs[child]
                self._waiting_execs[child] = []
                for executor in waiting:
                    self._committed[child] -= 1
                    self._start_task(executor, child)
        self.job_stages_left[job] -= 1
        if self.job_stages_left[job] == 0:
            self.job_active[job] = False
            self._jobset_version += 1
            self.job_completion_s[job] = self.time_s
            self.jobs_in_system -= 1
            self.jobs_done += 1
            self.dirty = True
            free = self._free.pop(job, []) if self.cluster.move_from_pool else []
            for executor in free:
                self._exec_owner[executor] = _POOL
                self._exec_last_stage[executor] = -1
            if free:
                self._free.setdefault(_POOL, []).extend(free)
