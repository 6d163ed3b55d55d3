"""Proven-optimal offloading plans with CP-SAT (and brute force for test-sized cases).

The model is exactly the plan semantics: one cut per job (Boolean ``x[j, c]`` over the Pareto
cuts, which is lossless: see :mod:`envs.offload.cuts`), one order shared by the device, the
uplink and the server (pairwise order literals with transitivity), and for each resource a job
uses, the earlier job in the order finishes there before the later one starts. Times are
integers in microseconds; the returned plan is re-simulated in floating point.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ortools.sat.python import cp_model

from envs.offload.instance import OffloadInstance
from envs.offload.simulator import Plan, simulate
from heuristics.offload import CutTable, joint

TICKS_PER_S = 1_000_000


@dataclass(frozen=True)
class ExactResult:
    plan: Plan
    makespan_s: float
    proven_optimal: bool
    lower_bound_s: float
    wall_s: float


def offload_optimal(instance: OffloadInstance, time_limit_s: float = 30.0,
                    num_workers: int = 2) -> ExactResult:
    """Optimal plan by CP-SAT; ``proven_optimal`` is False if the time limit stopped it."""
    table = CutTable(instance)
    jobs = range(instance.num_jobs)
    model = cp_model.CpModel()

    def ticks(seconds: float) -> int:
        return int(round(seconds * TICKS_PER_S))

    horizon = ticks(sum(max(sum(float(t[c]) for t in table.times[j]) for c in table.options[j])
                        for j in jobs)) + 1
    choose, starts, ends, sizes, present = {}, {}, {}, {}, {}
    for j in jobs:
        literals = {int(c): model.new_bool_var(f"x_{j}_{c}") for c in table.options[j]}
        model.add_exactly_one(literals.values())
        choose[j] = literals
        durations = []
        for resource in range(3):
            durations.append(sum(ticks(float(table.times[j][resource][c])) * lit
                                 for c, lit in literals.items()))
        uses = [
            [lit for c, lit in literals.items() if table.times[j][0][c] > 0],
            [lit for c, lit in literals.items() if c != table.local_cut[j]],
        ]
        uses.append(uses[1])
        for resource in range(3):
            start = model.new_int_var(0, horizon, f"start_{j}_{resource}")
            end = model.new_int_var(0, horizon, f"end_{j}_{resource}")
            size = model.new_int_var(0, horizon, f"size_{j}_{resource}")
            model.add(size == durations[resource])
            model.add(end == start + size)
            sizes[j, resource] = size
            is_used = model.new_bool_var(f"uses_{j}_{resource}")
            model.add(sum(uses[resource]) == is_used)
            starts[j, resource], ends[j, resource], present[j, resource] = start, end, is_used
    makespan, before = add_plan_order(model, jobs, starts, sizes, ends, present, horizon)
    for i, j in itertools.combinations(jobs, 2):
        if instance.jobs[i].layers == instance.jobs[j].layers and (
                instance.jobs[i].input_bytes == instance.jobs[j].input_bytes):
            model.add(before[i, j] == 1)  # identical jobs are interchangeable: keep index order

    warm = joint(instance, time_limit_s=min(1.0, time_limit_s / 4))
    for j, cut in warm:
        for c, lit in choose[j].items():
            model.add_hint(lit, c == cut)
    hint_order(model, before, warm)
    model.minimize(makespan)

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = num_workers
    status = solver.solve(model)
    warm_s = simulate(instance, warm).makespan_s
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return ExactResult(warm, warm_s, False, 0.0, solver.wall_time)
    cuts = {j: next(c for c, lit in choose[j].items() if solver.value(lit)) for j in jobs}
    plan = Plan(tuple((j, cuts[j]) for j in solved_order(solver, before, jobs)))
    makespan_s = simulate(instance, plan).makespan_s
    if warm_s < makespan_s:  # rounding to ticks can flip a near-tie; keep the better plan
        plan, makespan_s = warm, warm_s
    bound_s = solver.best_objective_bound / TICKS_PER_S
    return ExactResult(plan, makespan_s, status == cp_model.OPTIMAL, bound_s, solver.wall_time)


def add_plan_order(model: cp_model.CpModel, jobs: range, starts: dict, sizes: dict, ends: dict,
                   present: dict, horizon: int) -> tuple[cp_model.IntVar, dict]:
    """The plan semantics shared by the job-level CP-SAT models, over per-job, per-resource
    (0 device, 1 uplink, 2 server) ``starts``/``sizes``/``ends`` and presence literals: each job
    runs device, then uplink, then server; one order of jobs, shared by the three resources
    (pairwise literals with transitivity), decides who goes first wherever two jobs meet.
    Returns the makespan variable and the order literals ``before[i, j]``."""
    for j in jobs:
        model.add(starts[j, 1] >= ends[j, 0]).only_enforce_if(present[j, 0])
        model.add(starts[j, 2] >= ends[j, 1])
    for resource in range(3):
        model.add_no_overlap([
            model.new_optional_interval_var(starts[j, resource], sizes[j, resource],
                                            ends[j, resource], present[j, resource],
                                            f"busy_{j}_{resource}")
            for j in jobs])
    makespan = model.new_int_var(0, horizon, "makespan")
    for j in jobs:
        model.add(makespan >= ends[j, 0])
        model.add(makespan >= ends[j, 2]).only_enforce_if(present[j, 1])
    before = {}
    for i, j in itertools.combinations(jobs, 2):
        before[i, j] = model.new_bool_var(f"before_{i}_{j}")
        before[j, i] = ~before[i, j]
    for i, j, k in itertools.permutations(jobs, 3):
        model.add_bool_or([~before[i, j], ~before[j, k], before[i, k]])
    for i, j in itertools.permutations(jobs, 2):
        for resource in range(3):
            model.add(ends[i, resource] <= starts[j, resource]).only_enforce_if(
                [before[i, j], present[i, resource], present[j, resource]])
    return makespan, before


def hint_order(model: cp_model.CpModel, before: dict, plan: Plan) -> None:
    """Hint the order literals with ``plan``'s job order."""
    position = {job: index for index, job in enumerate(plan.order())}
    for (i, j), literal in before.items():
        if i < j:
            model.add_hint(literal, position[i] < position[j])


def solved_order(solver: cp_model.CpSolver, before: dict, jobs: range) -> list[int]:
    """Job order of a solution: a job goes before as many others as its rank says."""
    return sorted(jobs, key=lambda j: sum(solver.value(before[j, k]) for k in jobs if k != j),
                  reverse=True)


def brute_force_optimal(instance: OffloadInstance) -> tuple[Plan, float]:
    """Every order times every cut combination (all cuts, not just Pareto): tiny cases only."""
    best: tuple[Plan, float] | None = None
    cut_ranges = [range(job.num_cuts) for job in instance.jobs]
    for order in itertools.permutations(range(instance.num_jobs)):
        for cuts in itertools.product(*cut_ranges):
            plan = Plan(tuple((j, cuts[j]) for j in order))
            makespan_s = simulate(instance, plan).makespan_s
            if best is None or makespan_s < best[1]:
                best = (plan, makespan_s)
    assert best is not None
    return best
