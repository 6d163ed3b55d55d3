"""Exact optima for DAG offloading with CP-SAT, and brute force for tiny cases.

- :func:`single_job_optimal`: the least single-job latency over every predecessor-closed
  partition (Boolean ``x[v]`` = layer on the device, ``x[v] <= x[parent]``, a tensor is sent
  when its producer is on the device and some consumer is not).
- :func:`offload_dag_optimal`: the job-level batch optimum over every closed partition of
  every job (not only the candidate options) and every order, with the simulator's rules
  (one order shared by device, uplink and server). The optimal partitions are added to the
  jobs' options (:func:`with_partitions`) so the result is an ordinary plan.
- :func:`layer_level_optimal`: the optimum of the layer-level model
  (:mod:`envs.offload.layer_sim`) for fixed options: any order of layers and tensors.

Times are integers in nanoseconds; every returned plan is re-simulated in floating point.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from envs.offload.dag import DagGraph, DagJob, job_graph, job_option, option_mask
from envs.offload.instance import OffloadInstance
from envs.offload.layer_sim import LayerPlan, job_parts, simulate_layers, tensor_seconds
from envs.offload.simulator import Plan, simulate
from heuristics.exact.offload import add_plan_order, hint_order, solved_order

TICKS_PER_S = 1_000_000_000


def _ticks(seconds: float) -> int:
    return int(round(seconds * TICKS_PER_S))


def _partition_vars(model: cp_model.CpModel, graph: DagGraph, bandwidth_mbps: float,
                    latency_s: float, tag: str) -> dict[str, Any]:
    """Closed-partition variables of one job and its device, upload and server ticks."""
    x = [model.new_bool_var(f"x{tag}_{v}") for v in range(len(graph))]
    for v, parents in enumerate(graph.parents):
        for p in parents:
            if p >= 0:
                model.add_implication(x[v], x[p])
    sent = {}
    if graph.input_readers:
        sent[-1] = model.new_bool_var(f"in{tag}")
        for reader in graph.input_readers:
            model.add_implication(~x[reader], sent[-1])
    for u in range(len(graph)):
        if graph.children[u]:
            sent[u] = model.new_bool_var(f"sent{tag}_{u}")
            for child in graph.children[u]:
                model.add_bool_or([~x[u], x[child], sent[u]])
    local = model.new_bool_var(f"local{tag}")
    for v in range(len(graph)):
        model.add_implication(local, x[v])
    model.add_bool_or([local] + [~lit for lit in x])
    price = 8.0 / (bandwidth_mbps * 1e6)
    device = sum(_ticks(float(graph.device_s[v])) * x[v] for v in range(len(graph)))
    server = sum(_ticks(float(graph.server_s[v])) * (1 - x[v]) for v in range(len(graph)))
    upload = _ticks(latency_s) * (1 - local) + sum(
        _ticks(price * (graph.input_bytes if u < 0 else float(graph.output_bytes[u]))) * lit
        for u, lit in sent.items())
    uses_device = model.new_bool_var(f"usesdev{tag}")
    timed = [x[v] for v in range(len(graph)) if _ticks(float(graph.device_s[v])) > 0]
    model.add_max_equality(uses_device, timed or [model.new_constant(0)])
    return {"x": x, "local": local, "device": device, "upload": upload, "server": server,
            "uses_device": uses_device}


def _solve(model: cp_model.CpModel, time_limit_s: float, num_workers: int
           ) -> tuple[cp_model.CpSolver, int]:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = num_workers
    return solver, solver.solve(model)


@dataclass(frozen=True)
class SingleJobResult:
    mask: np.ndarray
    latency_s: float
    proven_optimal: bool


def single_job_optimal(graph: DagGraph, bandwidth_mbps: float, latency_s: float,
                       time_limit_s: float = 30.0, num_workers: int = 2) -> SingleJobResult:
    """Least ``D + U + S`` over all closed partitions (all-local: ``D`` only)."""
    model = cp_model.CpModel()
    parts = _partition_vars(model, graph, bandwidth_mbps, latency_s, "")
    model.minimize(parts["device"] + parts["upload"] + parts["server"])
    solver, status = _solve(model, time_limit_s, num_workers)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise RuntimeError(f"CP-SAT found no partition in {time_limit_s} s")
    mask = np.array([bool(solver.value(lit)) for lit in parts["x"]])
    return SingleJobResult(mask, graph.latency_s(mask, bandwidth_mbps, latency_s),
                           status == cp_model.OPTIMAL)


def brute_force_single_job(graph: DagGraph, bandwidth_mbps: float, latency_s: float
                           ) -> tuple[np.ndarray, float]:
    """Every closed subset (tiny graphs only)."""
    best: tuple[np.ndarray, float] | None = None
    for bits in itertools.product((False, True), repeat=len(graph)):
        mask = np.array(bits, dtype=bool)
        if not graph.is_closed(mask):
            continue
        value = graph.latency_s(mask, bandwidth_mbps, latency_s)
        if best is None or value < best[1] - 1e-15:
            best = (mask, value)
    assert best is not None
    return best


def with_partitions(instance: OffloadInstance, masks: list[np.ndarray]) -> OffloadInstance:
    """``instance`` whose DAG jobs also offer ``masks[j]`` (inserted before all-local)."""
    jobs = []
    for job, mask in zip(instance.jobs, masks, strict=True):
        if isinstance(job, DagJob) and job_option(job, mask) is None:
            partition = job.graph.partition(mask)
            job = replace(job, partitions=job.partitions[:-1] + (partition, job.partitions[-1]))
        jobs.append(job)
    return OffloadInstance(instance.bandwidth_mbps, instance.latency_s, tuple(jobs))


@dataclass(frozen=True)
class DagExactResult:
    instance: OffloadInstance   # the input instance with the optimal partitions as options
    plan: Plan
    makespan_s: float
    proven_optimal: bool
    lower_bound_s: float


def offload_dag_optimal(instance: OffloadInstance, time_limit_s: float = 30.0,
                        num_workers: int = 2, hint: Plan | None = None) -> DagExactResult:
    """Job-level optimum over every closed partition of every job and every job order."""
    model = cp_model.CpModel()
    jobs = range(instance.num_jobs)
    graphs = [job_graph(job) for job in instance.jobs]
    parts = [_partition_vars(model, graphs[j], instance.bandwidth_mbps, instance.latency_s,
                             f"_{j}") for j in jobs]
    horizon = sum(_ticks(float(g.device_s.sum() + g.server_s.sum())) + _ticks(
        instance.latency_s + 8.0 * (g.input_bytes + g.output_bytes.sum())
        / (instance.bandwidth_mbps * 1e6)) for g in graphs) + 1
    starts, sizes, ends, present = {}, {}, {}, {}
    for j in jobs:
        offloads = ~parts[j]["local"]
        for r, (key, used) in enumerate((("device", parts[j]["uses_device"]),
                                         ("upload", offloads), ("server", offloads))):
            start = model.new_int_var(0, horizon, f"s{j}_{r}")
            size = model.new_int_var(0, horizon, f"d{j}_{r}")
            end = model.new_int_var(0, horizon, f"e{j}_{r}")
            model.add(size == parts[j][key])
            model.add(end == start + size)
            starts[j, r], sizes[j, r], ends[j, r], present[j, r] = start, size, end, used
    makespan, before = add_plan_order(model, jobs, starts, sizes, ends, present, horizon)
    if hint is not None:
        hint_order(model, before, hint)
        for j, option in hint.steps:
            for lit, value in zip(parts[j]["x"], option_mask(instance.jobs[j], option),
                                  strict=True):
                model.add_hint(lit, bool(value))
    model.minimize(makespan)
    solver, status = _solve(model, time_limit_s, num_workers)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise RuntimeError(f"CP-SAT found no plan in {time_limit_s} s")
    masks = [np.array([bool(solver.value(lit)) for lit in parts[j]["x"]]) for j in jobs]
    augmented = with_partitions(instance, masks)
    plan = Plan(tuple((j, job_option(augmented.jobs[j], masks[j]))
                      for j in solved_order(solver, before, jobs)))
    makespan_s = simulate(augmented, plan).makespan_s
    if hint is not None:
        hint_s = simulate(instance, hint).makespan_s
        if hint_s < makespan_s:  # rounding to ticks can flip a near-tie
            augmented, plan, makespan_s = instance, hint, hint_s
    return DagExactResult(augmented, plan, makespan_s, status == cp_model.OPTIMAL,
                          solver.best_objective_bound / TICKS_PER_S)


def layer_level_optimal(instance: OffloadInstance, options: list[int],
                        time_limit_s: float = 30.0, num_workers: int = 2
                        ) -> tuple[LayerPlan, float, bool]:
    """Optimal layer plan for fixed ``options`` (layer-level model, any orders)."""
    model = cp_model.CpModel()
    parts = [job_parts(instance, j, int(c)) for j, c in enumerate(options)]
    horizon = 1 + sum(
        sum(_ticks(float(p.graph.device_s[v])) for v in p.device)
        + sum(_ticks(tensor_seconds(instance, p.graph, u)) for u in p.tensors)
        + _ticks(instance.latency_s) + sum(_ticks(float(p.graph.server_s[v])) for v in p.server)
        for p in parts)
    intervals: dict[str, list] = {"device": [], "uplink": [], "server": []}
    start, end = {}, {}

    def interval(resource: str, key: tuple, duration: Any, fixed: int | None) -> None:
        start[key] = model.new_int_var(0, horizon, f"s{key}")
        end[key] = model.new_int_var(0, horizon, f"e{key}")
        size = fixed if fixed is not None else duration
        intervals[resource].append(model.new_interval_var(start[key], size, end[key], f"i{key}"))

    makespan = model.new_int_var(0, horizon, "makespan")
    for j, part in enumerate(parts):
        graph = part.graph
        for v in part.device:
            interval("device", ("d", j, v), None, _ticks(float(graph.device_s[v])))
            for p in graph.parents[v]:
                if p >= 0:
                    model.add(start["d", j, v] >= end["d", j, p])
            model.add(makespan >= end["d", j, v])
        first = {u: model.new_bool_var(f"first{j}_{u}") for u in part.tensors}
        if first:
            model.add_exactly_one(first.values())
        for u in part.tensors:
            size = model.new_int_var(0, horizon, f"size{j}_{u}")
            model.add(size == _ticks(tensor_seconds(instance, graph, u))
                      + _ticks(instance.latency_s) * first[u])
            interval("uplink", ("u", j, u), size, None)
            if u >= 0:
                model.add(start["u", j, u] >= end["d", j, u])
        for u in part.tensors:
            for other in part.tensors:
                if other != u:
                    model.add(start["u", j, u] <= start["u", j, other]).only_enforce_if(first[u])
        for v in part.server:
            interval("server", ("s", j, v), None, _ticks(float(graph.server_s[v])))
            for p in graph.parents[v]:
                source = ("s", j, p) if p >= 0 and not part.mask[p] else ("u", j, p)
                model.add(start["s", j, v] >= end[source])
            model.add(makespan >= end["s", j, v])
    for resource in intervals:
        model.add_no_overlap(intervals[resource])
    model.minimize(makespan)
    solver, status = _solve(model, time_limit_s, num_workers)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise RuntimeError(f"CP-SAT found no layer plan in {time_limit_s} s")

    def ordered(kind: str, items: list[tuple[int, int]]) -> tuple:
        return tuple(sorted(items, key=lambda item: (solver.value(start[(kind, *item)]),
                                                     solver.value(end[(kind, *item)]))))

    plan = LayerPlan(tuple(int(c) for c in options),
                     ordered("d", [(j, v) for j, p in enumerate(parts) for v in p.device]),
                     ordered("u", [(j, u) for j, p in enumerate(parts) for u in p.tensors]),
                     ordered("s", [(j, v) for j, p in enumerate(parts) for v in p.server]))
    return plan, simulate_layers(instance, plan).makespan_s, status == cp_model.OPTIMAL
