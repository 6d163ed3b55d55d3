"""Optimal parameter-server allocations with CP-SAT (small instances).

The model is the simulator's, linearised with Booleans:
``x[b, m]`` block ``b`` on ``m``; ``y[s, m]`` shard ``s`` owned by ``m``; ``a[s, m] >= x[b, m]``
for every block touching ``s`` (``m`` accesses ``s``); ``r[s, m] >= a[s, m] - y[s, m]`` (a
remote access: one pull and one push through ``m``'s link); ``q[s, o, w] >= y[s, o] + a[s, w]
- 1`` for ``o != w`` (owner ``o`` serves ``w``). Every coefficient is positive and the
objective minimises the maximum machine time, so at an optimum these lower bounds are tight
where they matter. Times are integers in units of ``reference_s / 10**7`` (``reference_s`` =
the best heuristic's iteration time); the returned allocation is re-simulated in floating
point and the lower bound is deflated by the largest possible rounding error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from envs.param_server.instance import Allocation, ParamServerInstance
from envs.param_server.simulator import evaluate
from heuristics.param_server import HEURISTICS

RESOLUTION = 10**7


@dataclass(frozen=True)
class ParamServerExactResult:
    allocation: Allocation
    iteration_s: float
    remote_bytes: int
    proven_optimal: bool
    lower_bound_s: float
    wall_s: float
    status: str


def param_server_optimal(instance: ParamServerInstance, time_limit_s: float = 30.0,
                         num_workers: int = 2,
                         hint: Allocation | None = None) -> ParamServerExactResult:
    """Minimum ``iteration_s`` allocation by CP-SAT within every machine's memory.

    ``hint`` (default: the best of ``HEURISTICS``) seeds the search and sets the time unit.
    ``proven_optimal`` is False when the time limit stopped the search first.
    """
    started = time.perf_counter()
    if hint is None:
        hint = min((planner(instance) for planner in HEURISTICS.values()),
                   key=lambda allocation: evaluate(instance, allocation).iteration_s)
    reference_s = evaluate(instance, hint).iteration_s
    unit_s = reference_s / RESOLUTION
    machines = range(instance.num_machines)
    model = cp_model.CpModel()
    x = {(b, m): model.new_bool_var(f"x{b}_{m}") for b in range(instance.num_blocks)
         for m in machines}
    y = {(s, m): model.new_bool_var(f"y{s}_{m}") for s in range(instance.num_shards)
         for m in machines}
    for b in range(instance.num_blocks):
        model.add_exactly_one(x[b, m] for m in machines)
    for s in range(instance.num_shards):
        model.add_exactly_one(y[s, m] for m in machines)
    link_terms: dict[int, list] = {m: [] for m in machines}
    rounding_terms = np.zeros(instance.num_machines)
    for s in range(instance.num_shards):
        blocks = instance.shard_blocks[s]
        if blocks.size == 0:
            continue
        access = {}
        for m in machines:
            access[m] = model.new_bool_var(f"a{s}_{m}")
            for b in blocks:
                model.add_implication(x[int(b), m], access[m])
        for m in machines:
            seconds = 2.0 * instance.shard_bytes[s] / instance.bandwidth_bytes_per_s[m]
            weight = int(round(seconds / unit_s))
            remote = model.new_bool_var(f"r{s}_{m}")
            model.add(remote >= access[m] - y[s, m])
            link_terms[m].append((weight, remote))
            for w in machines:
                if w == m:
                    continue
                serve = model.new_bool_var(f"q{s}_{m}_{w}")
                model.add(serve >= y[s, m] + access[w] - 1)
                link_terms[m].append((weight, serve))
            rounding_terms[m] += instance.num_machines * 0.5
    iteration = model.new_int_var(0, 10**15, "iteration")
    for m in machines:
        compute = [(int(round(instance.block_nnz[b] / instance.speed_nnz_per_s[m] / unit_s)),
                    x[b, m]) for b in range(instance.num_blocks)]
        rounding_terms[m] += 0.5 * instance.num_blocks
        terms = compute + link_terms[m]
        model.add(iteration >= sum(weight * var for weight, var in terms))
        model.add(sum(int(instance.block_bytes[b]) * x[b, m] for b in range(instance.num_blocks))
                  + sum(int(instance.shard_bytes[s]) * y[s, m]
                        for s in range(instance.num_shards)) <= int(instance.memory_bytes[m]))
    if _identical_machines(instance):
        model.add(x[0, 0] == 1)
    for b, m in enumerate(hint.block_machine):
        for machine in machines:
            model.add_hint(x[b, machine], int(machine == m))
    for s, m in enumerate(hint.shard_machine):
        for machine in machines:
            model.add_hint(y[s, machine], int(machine == m))
    model.minimize(iteration)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit_s)
    solver.parameters.num_workers = int(num_workers)
    status = solver.solve(model)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        allocation = Allocation(
            np.array([next(m for m in machines if solver.boolean_value(x[b, m]))
                      for b in range(instance.num_blocks)]),
            np.array([next(m for m in machines if solver.boolean_value(y[s, m]))
                      for s in range(instance.num_shards)]))
        bound_units = solver.best_objective_bound
    else:
        allocation, bound_units = hint, 0.0
    result = evaluate(instance, allocation)
    lower_bound_s = max(0.0, (bound_units - rounding_terms.max()) * unit_s)
    return ParamServerExactResult(
        allocation=allocation, iteration_s=result.iteration_s, remote_bytes=result.remote_bytes,
        proven_optimal=status == cp_model.OPTIMAL, lower_bound_s=lower_bound_s,
        wall_s=time.perf_counter() - started, status=solver.status_name(status))


def _identical_machines(instance: ParamServerInstance) -> bool:
    return bool(np.all(instance.speed_nnz_per_s == instance.speed_nnz_per_s[0])
                and np.all(instance.bandwidth_bytes_per_s == instance.bandwidth_bytes_per_s[0])
                and np.all(instance.memory_bytes == instance.memory_bytes[0]))
