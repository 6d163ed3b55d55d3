"""Planners for batches of DAG (and chain) offloading jobs.

``HEURISTICS[name](instance) -> Plan`` are job-level planners (evaluate with
:func:`envs.offload.simulate`); every partition they pick is one of the job's candidate options
(:func:`envs.offload.dag.candidate_partitions` contains each of them by construction).
:func:`layer_level` returns a :class:`envs.offload.layer_sim.LayerPlan` (evaluate with
:func:`envs.offload.layer_sim.simulate_layers`).

- ``dads``: the published DADS min cut (no reverse edges; repaired to a closed partition when
  it is not one), jobs pipelined in Johnson order.
- ``dads_fixed``: the min cut with infinite reverse edges (the exact single-job optimum over
  every closed partition, all-local compared separately for the latency constant), Johnson
  order.
- ``dads_weighted``: the heavy-load variant: for each weight of the sweep every job takes the
  weighted min cut; each weight's batch is ordered by Johnson; the best makespan wins.
- ``neurosurgeon``: the best single-tensor cut point per job, jobs one after another.
- ``path_based``: path decomposition and the chain method per path, Johnson order.
- ``joint``: the chain planner of :mod:`heuristics.offload` over the candidate options.
- ``order_search``: every job order (up to 6 jobs) with the best options for each order.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from envs.offload.bounds import latency_lower_bound
from envs.offload.dag import (
    WEIGHT_SWEEP,
    dads_mask,
    job_graph,
    job_option,
    neurosurgeon_mask,
    path_based_mask,
)
from envs.offload.instance import OffloadInstance
from envs.offload.layer_sim import (
    LayerPlan,
    expand_plan,
    job_parts,
    simulate_layers,
    tensor_seconds,
)
from envs.offload.simulator import Plan, simulate
from heuristics.offload import (
    CutTable,
    cuts_for_order,
    joint,
    two_stage_johnson,
)

__all__ = ["HEURISTICS", "dads", "dads_fixed", "dads_weighted", "device_order_by_tree_merge",
           "joint_dag", "layer_level", "lower_bound", "neurosurgeon", "order_search",
           "path_based", "schedule_layers"]


def option_for(instance: OffloadInstance, job: int, mask: np.ndarray) -> int:
    """The option of ``job`` with device set ``mask``; if it is not a candidate (the job's
    candidates were built for another bandwidth), the candidate of least latency."""
    option = job_option(instance.jobs[job], mask)
    if option is not None:
        return option
    device_s, upload_s, server_s = instance.cut_times(job)
    return int(np.argmin(device_s + upload_s + server_s))


def _options(instance: OffloadInstance, rule: Callable[[int], np.ndarray]) -> list[int]:
    return [option_for(instance, j, rule(j)) for j in range(instance.num_jobs)]


def _johnson_plan(instance: OffloadInstance, options: Sequence[int]) -> Plan:
    order = two_stage_johnson(CutTable(instance), list(options))
    return Plan(tuple((j, int(options[j])) for j in order))


def _latency_best(instance: OffloadInstance, job: int, mask: np.ndarray) -> np.ndarray:
    """``mask`` or all-local, whichever has the smaller single-job latency (a min cut ignores
    the per-request latency)."""
    graph = job_graph(instance.jobs[job])
    local = np.ones(len(graph), dtype=bool)
    bandwidth, latency = instance.bandwidth_mbps, instance.latency_s
    if graph.latency_s(local, bandwidth, latency) <= graph.latency_s(mask, bandwidth, latency):
        return local
    return mask


def dads_fixed_options(instance: OffloadInstance) -> list[int]:
    return _options(instance, lambda j: _latency_best(
        instance, j, dads_mask(job_graph(instance.jobs[j]), instance.bandwidth_mbps)))


def dads_options(instance: OffloadInstance) -> list[int]:
    return _options(instance, lambda j: _latency_best(instance, j, dads_mask(
        job_graph(instance.jobs[j]), instance.bandwidth_mbps, reverse_edges=False)))


def dads(instance: OffloadInstance) -> Plan:
    return _johnson_plan(instance, dads_options(instance))


def dads_fixed(instance: OffloadInstance) -> Plan:
    return _johnson_plan(instance, dads_fixed_options(instance))


def weighted_options(instance: OffloadInstance, weight: float) -> list[int]:
    return _options(instance, lambda j: dads_mask(job_graph(instance.jobs[j]),
                                                  instance.bandwidth_mbps, weight))


def dads_weighted(instance: OffloadInstance, weights: Sequence[float] = WEIGHT_SWEEP) -> Plan:
    best: tuple[float, Plan] | None = None
    for weight in weights:
        plan = _johnson_plan(instance, weighted_options(instance, weight))
        makespan_s = simulate(instance, plan).makespan_s
        if best is None or makespan_s < best[0]:
            best = (makespan_s, plan)
    assert best is not None
    return best[1]


def neurosurgeon(instance: OffloadInstance) -> Plan:
    options = _options(instance, lambda j: neurosurgeon_mask(
        job_graph(instance.jobs[j]), instance.bandwidth_mbps, instance.latency_s))
    return Plan(tuple((j, options[j]) for j in range(instance.num_jobs)), sequential=True)


def path_based(instance: OffloadInstance) -> Plan:
    return _johnson_plan(instance, _options(instance, lambda j: path_based_mask(
        job_graph(instance.jobs[j]), instance.bandwidth_mbps, instance.latency_s)))


def joint_dag(instance: OffloadInstance) -> Plan:
    return joint(instance, time_limit_s=1.0)


def order_search(instance: OffloadInstance, max_permuted_jobs: int = 6) -> Plan:
    """Orders x best options per order: every job order when there are at most
    ``max_permuted_jobs`` jobs (else the Johnson orders of the weight sweep and of ``joint``),
    each given its options by the resource-state beam search of
    :func:`heuristics.offload.cuts_for_order`; ``joint``'s plan is kept if better."""
    table = CutTable(instance)
    start = joint_dag(instance)
    best = (simulate(instance, start).makespan_s, start)
    if instance.num_jobs <= max_permuted_jobs:
        orders = itertools.permutations(range(instance.num_jobs))
    else:
        orders = [start.order()] + [two_stage_johnson(table, weighted_options(instance, w))
                                    for w in WEIGHT_SWEEP]
    for order in orders:
        options, _ = cuts_for_order(table, list(order))
        plan = Plan(tuple((j, options[j]) for j in order))
        makespan_s = table.makespan(list(order), options)
        if makespan_s < best[0] * (1 - 1e-12):
            best = (makespan_s, plan)
    return best[1]


HEURISTICS: dict[str, Callable[[OffloadInstance], Plan]] = {
    "dads": dads,
    "dads_fixed": dads_fixed,
    "dads_weighted": dads_weighted,
    "neurosurgeon": neurosurgeon,
    "path_based": path_based,
    "joint": joint_dag,
    "order_search": order_search,
}


# --- layer-level scheduling -----------------------------------------------------------------
def _johnson_key(first_s: float, second_s: float) -> tuple[int, float]:
    """Johnson's rule as a sort key: ``a < b`` first by increasing ``a``, then by decreasing
    ``b``."""
    return (0, first_s) if first_s < second_s else (1, -second_s)


def _compose(first: tuple[float, float], second: tuple[float, float]) -> tuple[float, float]:
    """Two-machine composite of ``first`` then ``second``: the pair behaves as one job."""
    overlap = min(first[1], second[0])
    return first[0] + second[0] - overlap, first[1] + second[1] - overlap


def device_order_by_tree_merge(items: list[tuple[float, float]], parent: list[int]
                               ) -> list[int]:
    """Order items with out-forest precedence for the two-machine flow shop (makespan).

    Monma-Sidney / Horn merging: repeatedly take the non-root composite that Johnson's rule
    would put first and append it to the composite holding its parent (in an optimal
    sequence it follows its parent directly). Roots hang under one virtual root, so parts of
    different trees interleave.
    """
    items = [(0.0, 0.0)] + list(items)
    parent = [-1] + [p + 1 if p >= 0 else 0 for p in parent]
    sequence = [[i] for i in range(len(items))]
    times = list(items)
    owner = list(range(len(items)))  # union-find: composite holding each item

    def find(i: int) -> int:
        while owner[i] != i:
            owner[i] = owner[owner[i]]
            i = owner[i]
        return i

    version = [0] * len(items)
    heap = [(_johnson_key(*times[i]), i, 0) for i in range(len(items)) if parent[i] >= 0]
    heapq.heapify(heap)
    while heap:
        _, head, stamp = heapq.heappop(heap)
        if find(head) != head or stamp != version[head]:
            continue
        target = find(parent[head])
        sequence[target] += sequence[head]
        times[target] = _compose(times[target], times[head])
        owner[head] = target
        version[target] += 1
        if parent[target] >= 0:
            heapq.heappush(heap, (_johnson_key(*times[target]), target, version[target]))
    return [item - 1 for item in sequence[0][1:]]


def schedule_layers(instance: OffloadInstance, options: Sequence[int]) -> LayerPlan:
    """A layer plan for fixed options.

    Device: each job's input is a root item, each device layer an item whose parent is its
    latest parent in graph order (the input for a source layer); an item's two-machine times
    are its device seconds and the upload seconds of its tensor (if it crosses) plus the server
    seconds of the server layers it is the latest crossing ancestor of. The forest is ordered by
    :func:`device_order_by_tree_merge`, then made topological where a DAG needs it. Uplink:
    tensors in order of device finish. Server: list scheduling, earliest ready layer first.
    On out-trees with zero server time and zero latency this is an optimal schedule.
    """
    parts = [job_parts(instance, j, int(c)) for j, c in enumerate(options)]
    items: list[tuple[float, float]] = []
    parent: list[int] = []
    item_of: dict[tuple[int, int], int] = {}
    for j, part in enumerate(parts):
        graph = part.graph
        crossing = set(part.tensors)
        server_load: dict[int, float] = {}
        for v in part.server:
            sources = _crossing_ancestors(graph, part.mask, v)
            if sources:
                server_load[max(sources)] = server_load.get(max(sources), 0.0) + float(
                    graph.server_s[v])
        first_upload = min(crossing, default=None)
        second_stage = {u: server_load.get(u, 0.0) for u in [-1, *part.device]}
        for u in crossing:
            latency = instance.latency_s if u == first_upload else 0.0
            second_stage[u] += tensor_seconds(instance, graph, u) + latency

        item_of[j, -1] = len(items)
        items.append((0.0, second_stage[-1]))
        parent.append(-1)
        for v in part.device:
            item_of[j, v] = len(items)
            items.append((float(graph.device_s[v]), second_stage[v]))
            parent.append(item_of[j, max(graph.parents[v], default=-1)])
    sequence = device_order_by_tree_merge(items, parent)
    rank = {item: position for position, item in enumerate(sequence)}
    device_order = _topological_by_rank(parts, item_of, rank)

    device_done: dict[tuple[int, int], float] = {}
    clock = 0.0
    for j, v in device_order:
        clock += float(parts[j].graph.device_s[v])
        device_done[j, v] = clock
    tensors = [(0.0 if u < 0 else device_done[j, u], j, u)
               for j, part in enumerate(parts) for u in part.tensors]
    tensors.sort(key=lambda t: (t[0], rank.get(item_of.get((t[1], t[2]), -1), -1)))
    uplink_order = tuple((j, u) for _, j, u in tensors)
    upload_done: dict[tuple[int, int], float] = {}
    clock, paid = 0.0, set()
    for ready, j, u in tensors:
        clock = max(clock, ready) + tensor_seconds(instance, parts[j].graph, u)
        if j not in paid:
            paid.add(j)
            clock += instance.latency_s
        upload_done[j, u] = clock
    server_order = _list_schedule_server(parts, upload_done)
    return LayerPlan(tuple(int(c) for c in options), tuple(device_order), uplink_order,
                     server_order)


def _crossing_ancestors(graph, mask: np.ndarray, layer: int) -> list[int]:
    """Crossing tensors (``-1`` = input) that server layer ``layer`` transitively reads."""
    found, stack, seen = set(), [layer], {layer}
    while stack:
        v = stack.pop()
        for p in graph.parents[v]:
            if p < 0 or mask[p]:
                found.add(p)
            elif p not in seen:
                seen.add(p)
                stack.append(p)
    return sorted(found)


def _topological_by_rank(parts, item_of, rank) -> list[tuple[int, int]]:
    """Device layers of all jobs: always the ready layer of smallest rank."""
    pending = {(j, v): sum(1 for p in part.graph.parents[v] if p >= 0)
               for j, part in enumerate(parts) for v in part.device}
    heap = [(rank[item_of[key]], key) for key, count in pending.items() if count == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        _, (j, v) = heapq.heappop(heap)
        order.append((j, v))
        for child in parts[j].graph.children[v]:
            if parts[j].mask[child]:
                pending[j, child] -= 1
                if pending[j, child] == 0:
                    heapq.heappush(heap, (rank[item_of[j, child]], (j, child)))
    return order


def _list_schedule_server(parts, upload_done) -> tuple[tuple[int, int], ...]:
    """Non-delay list schedule on the server: each time, the layer whose inputs were ready
    earliest (ties: job, then graph order)."""
    waits: dict[tuple[int, int], int] = {}
    ready_at: dict[tuple[int, int], float] = {}
    heap = []
    for j, part in enumerate(parts):
        for v in part.server:
            parents = part.graph.parents[v]
            on_server = [p for p in parents if p >= 0 and not part.mask[p]]
            waits[j, v] = len(on_server)
            ready_at[j, v] = max((upload_done[j, p] for p in parents
                                  if p < 0 or part.mask[p]), default=0.0)
            if not on_server:
                heapq.heappush(heap, (ready_at[j, v], j, v))
    order, clock = [], 0.0
    while heap:
        ready, j, v = heapq.heappop(heap)
        clock = max(clock, ready) + float(parts[j].graph.server_s[v])
        order.append((j, v))
        for child in parts[j].graph.children[v]:
            if not parts[j].mask[child]:
                ready_at[j, child] = max(ready_at[j, child], clock)
                waits[j, child] -= 1
                if waits[j, child] == 0:
                    heapq.heappush(heap, (ready_at[j, child], j, child))
    return tuple(order)


def layer_level(instance: OffloadInstance) -> LayerPlan:
    """Layer-level plan: the options of several job-level plans (``order_search``, ``dads_fixed`` and
    every weight of the DADS sweep), each scheduled by :func:`schedule_layers` and also as the
    layer expansion of its job-level plan (so it is never worse than those plans); the best
    layer makespan wins."""
    job_plans = [order_search(instance), _johnson_plan(instance, dads_fixed_options(instance))]
    job_plans += [_johnson_plan(instance, weighted_options(instance, w)) for w in WEIGHT_SWEEP]
    best: tuple[float, LayerPlan] | None = None
    seen = set()
    for job_plan in job_plans:
        options = tuple(c for _, c in sorted(job_plan.steps))
        candidates = [expand_plan(instance, job_plan)]
        if options not in seen:
            seen.add(options)
            candidates.append(schedule_layers(instance, options))
        for plan in candidates:
            makespan_s = simulate_layers(instance, plan).makespan_s
            if best is None or makespan_s < best[0]:
                best = (makespan_s, plan)
    assert best is not None
    return best[1]


def lower_bound(instance: OffloadInstance) -> float:
    """A lower bound on the job-level makespan over every closed partition of every job.

    LP relaxation (HiGHS): per job ``x[v]`` in [0, 1] (device share) with ``x[v] <= x[p]``,
    sent shares ``y[u] >= x[u] - x[c]`` for every consumer ``c`` (``y[input] >= 1 - x[r]``
    for every input reader ``r``); the makespan ``z`` is at least the total device, upload
    (latency left out) and server load and every job's ``D + U + S``. The larger of this and
    :func:`envs.offload.bounds.latency_lower_bound` (valid because every job's candidates
    contain its latency-optimal partition) is returned.
    """
    price = 8.0 / (instance.bandwidth_mbps * 1e6)
    rows, cols, vals, rhs = [], [], [], []
    blocks = []  # per job: (device coefficients, upload coefficients, server coefficients)
    column = 0

    def add_row(entries: list[tuple[int, float]], bound: float) -> None:
        row = len(rhs)
        for col, value in entries:
            rows.append(row)
            cols.append(col)
            vals.append(value)
        rhs.append(bound)

    for job in instance.jobs:
        graph = job_graph(job)
        x = list(range(column, column + len(graph)))
        column += len(graph)
        y: dict[int, int] = {}
        for u in [-1, *range(len(graph))]:
            if (u < 0 and graph.input_readers) or (u >= 0 and graph.children[u]):
                y[u] = column
                column += 1
        for v, parents in enumerate(graph.parents):
            for p in parents:
                if p >= 0:
                    add_row([(x[v], 1.0), (x[p], -1.0)], 0.0)
        for reader in graph.input_readers:
            add_row([(x[reader], -1.0), (y[-1], -1.0)], -1.0)
        for u in range(len(graph)):
            for c in graph.children[u]:
                add_row([(x[u], 1.0), (x[c], -1.0), (y[u], -1.0)], 0.0)
        upload = [(y[u], price * (graph.input_bytes if u < 0 else float(graph.output_bytes[u])))
                  for u in y]
        blocks.append(([(x[v], float(graph.device_s[v])) for v in range(len(graph))], upload,
                       [(x[v], float(graph.server_s[v])) for v in range(len(graph))],
                       float(graph.server_s.sum())))
    z = column
    num_vars = column + 1
    add_row([e for b in blocks for e in b[0]] + [(z, -1.0)], 0.0)
    add_row([e for b in blocks for e in b[1]] + [(z, -1.0)], 0.0)
    add_row([(c, -s) for b in blocks for c, s in b[2]] + [(z, -1.0)],
            -sum(b[3] for b in blocks))
    for device, upload, server, server_total in blocks:
        add_row(device + upload + [(c, -s) for c, s in server] + [(z, -1.0)], -server_total)
    matrix = coo_matrix((vals, (rows, cols)), shape=(len(rhs), num_vars)).tocsr()
    objective = np.zeros(num_vars)
    objective[z] = 1.0
    bounds = [(0.0, 1.0)] * column + [(0.0, None)]
    result = linprog(objective, A_ub=matrix, b_ub=np.array(rhs), bounds=bounds, method="highs")
    if not result.success:
        raise RuntimeError(f"DAG lower-bound LP failed: {result.message}")
    return max(float(result.fun) * (1 - 1e-9), latency_lower_bound(instance))
