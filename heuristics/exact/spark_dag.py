"""Spark DAG shop, batch makespan: a lower bound for any instance and a CP-SAT optimum for small
ones.

``spark_makespan_lower_bound`` is valid for every schedule of the simulator's model (processor
sharing included): the maximum of

- the longest path of a job (per stage the longest task at full bandwidth) plus one warm-up,
  after its arrival;
- ``min arrival + (total task seconds + one warm-up per job) / E`` (every task holds a slot;
  each job pays at least one warm-up);
- ``min arrival + total network seconds / C`` (the network never delivers more than C).

``spark_optimal_makespan`` solves, with CP-SAT, the task-level model *without network
contention*: every task holds one of E slots for ``network_s + compute_s + write_s`` seconds
without preemption, its network phase (its first ``network_s`` seconds) occupies one of
``floor(C)`` network channels at full rate, and a stage's tasks start only after all tasks of
its parents end. Tasks may start at any time on any slot (the optimum need not be reachable
through the env's stage-level actions). Moving delay and warm-up must be 0. Under processor
sharing a schedule *with* contention could in principle be shorter (sharing behaves like
preemption), so this is the optimum among contention-free schedules; the universal bound is
``spark_makespan_lower_bound``. Times are rounded to ``resolution_s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from envs.spark_dag.workload import ClusterSpec, Job


@dataclass(frozen=True)
class SparkExactResult:
    makespan_s: float
    optimal: bool
    lower_bound_s: float
    status: str
    wall_s: float
    num_tasks: int


def spark_makespan_lower_bound(jobs: Sequence[Job], cluster: ClusterSpec) -> float:
    """Valid lower bound on the makespan of ``jobs`` (see the module docstring)."""
    if not jobs:
        raise ValueError("spark_makespan_lower_bound: no jobs")
    first_arrival = min(job.arrival_s for job in jobs)
    path_bound = 0.0
    for job in jobs:
        longest = [0.0] * len(job.stages)
        parents = job.parent_positions()
        for position in job.topological_order:
            before = max((longest[p] for p in parents[position]), default=0.0)
            longest[position] = before + float(job.stages[position].task_duration_s.max())
        path_bound = max(path_bound, job.arrival_s + cluster.warmup_s + max(longest))
    total = sum(job.work_s for job in jobs) + len(jobs) * cluster.warmup_s
    network = sum(job.network_work_s for job in jobs)
    return max(path_bound, first_arrival + total / cluster.num_executors,
               first_arrival + network / cluster.network_capacity)


def spark_optimal_makespan(jobs: Sequence[Job], cluster: ClusterSpec, time_limit_s: float = 20.0,
                           resolution_s: float = 0.01, num_workers: int = 2,
                           max_tasks: int = 400) -> SparkExactResult:
    """CP-SAT makespan of the contention-free task-level model (module docstring)."""
    if cluster.moving_delay_s or cluster.warmup_s:
        raise ValueError("spark_optimal_makespan: needs moving_delay_s = warmup_s = 0 "
                         f"(got {cluster.moving_delay_s}, {cluster.warmup_s})")
    num_tasks = sum(job.num_tasks for job in jobs)
    if num_tasks > max_tasks:
        raise ValueError(f"spark_optimal_makespan: {num_tasks} tasks > max_tasks={max_tasks}; "
                         f"use spark_makespan_lower_bound for large instances")
    channels = math.floor(cluster.network_capacity + 1e-9)
    if channels < 1:
        raise ValueError(f"spark_optimal_makespan: network_capacity must be >= 1, got "
                         f"{cluster.network_capacity}")

    def ticks(seconds: float) -> int:
        return int(round(seconds / resolution_s))

    model = cp_model.CpModel()
    horizon = sum(ticks(job.arrival_s) for job in jobs) + sum(
        ticks(float(d)) + 1 for job in jobs for s in job.stages for d in s.task_duration_s)
    makespan = model.NewIntVar(0, horizon, "makespan")
    slots, demands_slot, network = [], [], []
    for j, job in enumerate(jobs):
        stage_end = [model.NewIntVar(0, horizon, f"end_{j}_{k}") for k in range(len(job.stages))]
        parents = job.parent_positions()
        for k, stage in enumerate(job.stages):
            previous_start = None
            previous_key = None
            stage_start = model.NewIntVar(ticks(job.arrival_s), horizon, f"start_{j}_{k}")
            durations = [max(ticks(float(d)), 1) for d in stage.task_duration_s]
            if len(set(durations)) == 1:
                # n identical tasks on <= E slots need ceil(n / E) waves (a redundant cut)
                waves = math.ceil(stage.num_tasks / cluster.num_executors)
                model.Add(stage_end[k] >= stage_start + waves * durations[0])
            starts = []
            for t in range(stage.num_tasks):
                net, dur = ticks(float(stage.network_s[t])), ticks(float(stage.task_duration_s[t]))
                dur = max(dur, 1)
                start = model.NewIntVar(ticks(job.arrival_s), horizon, f"s_{j}_{k}_{t}")
                slots.append(model.NewIntervalVar(start, dur, start + dur, f"slot_{j}_{k}_{t}"))
                demands_slot.append(1)
                if net > 0:
                    network.append(model.NewIntervalVar(start, net, start + net, f"net_{j}_{k}_{t}"))
                model.Add(stage_end[k] >= start + dur)
                starts.append(start)
                for p in parents[k]:
                    model.Add(start >= stage_end[p])
                key = (net, dur)
                if previous_start is not None and key == previous_key:
                    model.Add(previous_start <= start)  # identical tasks: break symmetry
                previous_start, previous_key = start, key
            model.AddMinEquality(stage_start, starts)
            model.Add(makespan >= stage_end[k])
    model.AddCumulative(slots, demands_slot, cluster.num_executors)
    if network:
        model.AddCumulative(network, [1] * len(network), channels)
    bound = spark_makespan_lower_bound(jobs, cluster)
    model.Add(makespan >= ticks(bound) - 1)
    model.Minimize(makespan)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit_s)
    solver.parameters.num_workers = num_workers
    status = solver.Solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise RuntimeError(f"spark_optimal_makespan: CP-SAT returned {solver.StatusName(status)}")
    return SparkExactResult(
        makespan_s=solver.Value(makespan) * resolution_s, optimal=status == cp_model.OPTIMAL,
        lower_bound_s=max(solver.BestObjectiveBound() * resolution_s, bound),
        status=solver.StatusName(status), wall_s=solver.WallTime(), num_tasks=num_tasks)
