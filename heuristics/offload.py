"""Offloading planners: ``HEURISTICS[name](instance) -> Plan`` and lower bounds.

Every planner returns a :class:`envs.offload.Plan`; evaluate it with
:func:`envs.offload.simulate`. A plan's cut for job ``j`` is in ``0..L_j``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import linprog

from envs.offload.bounds import latency_lower_bound
from envs.offload.cuts import pareto_cuts
from envs.offload.instance import OffloadInstance
from envs.offload.simulator import Plan, ResourceClock, makespan_from_times, simulate


class CutTable:
    """Per job: the Pareto cuts and their ``(D, U, S)`` times, shared by the planners."""

    def __init__(self, instance: OffloadInstance, start: ResourceClock | None = None) -> None:
        self.instance = instance
        self.start = start or ResourceClock()
        self.times = [instance.cut_times(j) for j in range(instance.num_jobs)]
        self.options = [pareto_cuts(*times) for times in self.times]
        self.local_cut = [job.local_cut for job in instance.jobs]

    def step(self, job: int, cut: int) -> tuple[float, float, float, bool]:
        device_s, upload_s, server_s = self.times[job]
        return (float(device_s[cut]), float(upload_s[cut]), float(server_s[cut]),
                cut != self.local_cut[job])

    def makespan(self, order: Sequence[int], cuts: Sequence[int]) -> float:
        return makespan_from_times((self.step(job, cuts[job]) for job in order), self.start)

    def best_cut(self, job: int, cost: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
                 ) -> int:
        device_s, upload_s, server_s = (t[self.options[job]] for t in self.times[job])
        return int(self.options[job][int(np.argmin(cost(device_s, upload_s, server_s)))])


def johnson_order(first_stage_s: Sequence[float], second_stage_s: Sequence[float]) -> list[int]:
    """Johnson's rule for two machines: jobs with ``a <= b`` first by increasing ``a``, then
    the others by decreasing ``b``. Optimal for F2||Cmax."""
    jobs = range(len(first_stage_s))
    head = sorted((j for j in jobs if first_stage_s[j] <= second_stage_s[j]),
                  key=lambda j: (first_stage_s[j], j))
    tail = sorted((j for j in jobs if first_stage_s[j] > second_stage_s[j]),
                  key=lambda j: (-second_stage_s[j], j))
    return head + tail


def two_stage_johnson(table: CutTable, cuts: Sequence[int]) -> list[int]:
    """Johnson order with the device as stage one and uplink + server as stage two."""
    steps = [table.step(j, cuts[j]) for j in range(len(cuts))]
    return johnson_order([d for d, _, _, _ in steps], [u + s for _, u, s, _ in steps])


def _latency(device_s: np.ndarray, upload_s: np.ndarray, server_s: np.ndarray) -> np.ndarray:
    return device_s + upload_s + server_s


def _balance(device_s: np.ndarray, upload_s: np.ndarray, server_s: np.ndarray) -> np.ndarray:
    # max(D, U + S) with the latency as a small tie-break
    return np.maximum(device_s, upload_s + server_s) + 1e-6 * (device_s + upload_s + server_s)


def all_local(instance: OffloadInstance) -> Plan:
    return Plan(tuple((j, job.local_cut) for j, job in enumerate(instance.jobs)))


def all_server(instance: OffloadInstance) -> Plan:
    """Upload every input; Johnson order on (uplink, server) is optimal for this cut."""
    table = CutTable(instance)
    steps = [table.step(j, 0) for j in range(instance.num_jobs)]
    order = johnson_order([u for _, u, _, _ in steps], [s for _, _, s, _ in steps])
    return Plan(tuple((j, 0) for j in order))


def neurosurgeon(instance: OffloadInstance) -> Plan:
    """Each job at its own latency-optimal cut, one job after another (no overlap)."""
    table = CutTable(instance)
    return Plan(tuple((j, table.best_cut(j, _latency)) for j in range(instance.num_jobs)),
                sequential=True)


def partition_only(instance: OffloadInstance) -> Plan:
    """Balanced cuts (minimise ``max(D, U + S)`` per job), jobs in the given order, pipelined."""
    table = CutTable(instance)
    return Plan(tuple((j, table.best_cut(j, _balance)) for j in range(instance.num_jobs)))


def schedule_only(instance: OffloadInstance) -> Plan:
    """A fixed cut rule (latency-optimal per job) with Johnson order, pipelined."""
    table = CutTable(instance)
    cuts = [table.best_cut(j, _latency) for j in range(instance.num_jobs)]
    return Plan(tuple((j, cuts[j]) for j in two_stage_johnson(table, cuts)))


def _cuts_for_weight(table: CutTable, weight: float) -> list[int]:
    """Each job minimises ``weight * D + (1 - weight) * (U + S)``: weight 0 keeps everything
    local, weight 1 offloads everything; device load falls as the weight grows."""
    def cost(device_s: np.ndarray, upload_s: np.ndarray, server_s: np.ndarray) -> np.ndarray:
        return weight * device_s + (1 - weight) * (upload_s + server_s) + 1e-9 * _latency(
            device_s, upload_s, server_s)
    return [table.best_cut(j, cost) for j in range(table.instance.num_jobs)]


def balance_search(table: CutTable, iterations: int = 24) -> tuple[list[int], list[int], float]:
    """Binary search on the balance weight so that device load meets uplink+server load.

    Every probed weight is evaluated with Johnson order; the best plan seen is returned as
    ``(order, cuts, makespan_s)``.
    """
    best: tuple[list[int], list[int], float] | None = None

    def evaluate(weight: float) -> float:
        nonlocal best
        cuts = _cuts_for_weight(table, weight)
        order = two_stage_johnson(table, cuts)
        makespan_s = table.makespan(order, cuts)
        if best is None or makespan_s < best[2]:
            best = (order, cuts, makespan_s)
        steps = [table.step(j, cuts[j]) for j in range(len(cuts))]
        device_load = sum(d for d, _, _, _ in steps)
        offload_load = max(sum(u for _, u, _, _ in steps), sum(s for _, _, s, _ in steps))
        return device_load - offload_load

    low, high = 0.0, 1.0
    evaluate(low)
    evaluate(high)
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        if evaluate(middle) > 0:
            low = middle
        else:
            high = middle
    assert best is not None
    return best


def local_search(table: CutTable, order: list[int], cuts: list[int], time_limit_s: float = 2.0
                 ) -> tuple[list[int], list[int], float]:
    """First-improvement search over single-cut changes (keeping the order or re-sorting it by
    Johnson's rule) and single-job insertions in the order, until no move improves."""
    best_s = table.makespan(order, cuts)
    deadline = time.perf_counter() + time_limit_s
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        for job in range(len(cuts)):
            if time.perf_counter() > deadline:
                break
            for cut in table.options[job]:
                if cut == cuts[job]:
                    continue
                trial_cuts = cuts.copy()
                trial_cuts[job] = int(cut)
                for trial_order in (order, two_stage_johnson(table, trial_cuts)):
                    trial_s = table.makespan(trial_order, trial_cuts)
                    if trial_s < best_s * (1 - 1e-9):
                        order, cuts, best_s, improved = list(trial_order), trial_cuts, trial_s, True
        for position in range(len(order)):
            if time.perf_counter() > deadline:
                break
            for target in range(len(order)):
                if target == position:
                    continue
                trial_order = order.copy()
                trial_order.insert(target, trial_order.pop(position))
                trial_s = table.makespan(trial_order, cuts)
                if trial_s < best_s * (1 - 1e-9):
                    order, best_s, improved = trial_order, trial_s, True
    return order, cuts, best_s


def cuts_for_order(table: CutTable, order: Sequence[int], beam: int = 64
                   ) -> tuple[list[int], float]:
    """Good cuts for a fixed order: beam search over resource states
    ``(device_free, uplink_free, server_free, local_done)``.

    Each step extends every kept state by every cut of the next job, keeps the Pareto front
    (a dominated state can never finish earlier) among the ``4 * beam`` states with the
    smallest makespan so far, and then the ``beam`` best of those.
    """
    start = table.start
    states = np.array([[start.device_free_s, start.uplink_free_s, start.server_free_s,
                        start.makespan_s]])
    history: list[tuple[np.ndarray, np.ndarray]] = []
    for job in order:
        options = table.options[job]
        device_s, upload_s, server_s = (t[options] for t in table.times[job])
        offloads = options != table.local_cut[job]
        dev, up, srv, local = (states[:, k:k + 1] for k in range(4))
        uses_device = device_s > 0
        new_dev = np.where(uses_device, dev + device_s, dev)
        device_done = np.where(uses_device, new_dev, 0.0)
        new_up = np.where(offloads, np.maximum(up, device_done) + upload_s, up)
        new_srv = np.where(offloads, np.maximum(srv, new_up) + server_s, srv)
        new_local = np.where(offloads, local, np.maximum(local, device_done))
        candidates = np.stack([new_dev, new_up, new_srv, new_local], axis=-1).reshape(-1, 4)
        scores = np.maximum(candidates[:, 2], candidates[:, 3]) + 1e-3 * candidates[:, :3].sum(1)
        if len(candidates) > 4 * beam:
            shortlist = np.argsort(scores)[: 4 * beam]  # the front is taken among the best few
        else:
            shortlist = np.arange(len(candidates))
        keep = shortlist[_pareto_front(candidates[shortlist])]
        if len(keep) > beam:
            keep = keep[np.argsort(scores[keep])[:beam]]
        history.append((keep // len(options), options[keep % len(options)]))
        states = candidates[keep]
    final = np.maximum(states[:, 2], states[:, 3])
    index = int(np.argmin(final))
    cuts = [0] * len(table.options)
    for job, (parents, chosen) in zip(reversed(order), reversed(history), strict=True):
        cuts[job] = int(chosen[index])
        index = int(parents[index])
    return cuts, float(final.min())


def _pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``points`` not dominated by another row (duplicates kept once)."""
    no_worse = np.all(points[:, None, :] <= points[None, :, :], axis=2)  # [other, row]
    better = np.any(points[:, None, :] < points[None, :, :], axis=2)
    duplicate_before = np.triu(no_worse & ~better, k=1)
    dominated = np.any(no_worse & better, axis=0) | np.any(duplicate_before, axis=0)
    return np.flatnonzero(~dominated)


def joint(instance: OffloadInstance, time_limit_s: float = 2.0,
          start: ResourceClock | None = None) -> Plan:
    """Partition and order chosen together (``time_limit_s`` bounds the improvement phase).

    1. Balance search: binary search on the weight of device time against uplink+server time
       in each job's cut choice, every probe ordered by Johnson's rule.
    2. Alternate until nothing improves: cuts for the current order (``cuts_for_order``, a
       beam search over resource states, beam 64, not exact), Johnson re-ordering, and
       local search on cuts and insertions.

    ``start`` plans these jobs after others that already hold the resources (re-planning the
    rest of a batch); the default is an idle system at time 0.
    """
    table = CutTable(instance, start)
    deadline = time.perf_counter() + time_limit_s
    order, cuts, best_s = balance_search(table)
    while time.perf_counter() < deadline:
        dp_cuts, dp_s = cuts_for_order(table, order)
        candidates = [(order, dp_cuts), (two_stage_johnson(table, dp_cuts), dp_cuts)]
        improved = False
        for trial_order, trial_cuts in candidates:
            trial_s = table.makespan(trial_order, trial_cuts)
            if trial_s < best_s * (1 - 1e-9):
                order, cuts, best_s, improved = list(trial_order), list(trial_cuts), trial_s, True
        remaining_s = max(deadline - time.perf_counter(), 0.0)
        order, cuts, search_s = local_search(table, order, cuts, remaining_s)
        if search_s < best_s * (1 - 1e-9):
            best_s, improved = search_s, True
        if not improved:
            break
    return Plan(tuple((j, cuts[j]) for j in order))


HEURISTICS: dict[str, Callable[[OffloadInstance], Plan]] = {
    "all_local": all_local,
    "all_server": all_server,
    "neurosurgeon": neurosurgeon,
    "partition_only": partition_only,
    "schedule_only": schedule_only,
    "joint": joint,
}


def lower_bound(instance: OffloadInstance) -> float:
    """A valid lower bound on the makespan of any plan.

    LP relaxation over each job's cut choice ``x[j, c]``: the makespan is at least the total
    device, uplink and server load, and at least every job's own latency ``D + U + S``.
    """
    table = CutTable(instance)
    columns = [(j, int(c)) for j in range(instance.num_jobs) for c in table.options[j]]
    num_vars = len(columns) + 1  # the last variable is the makespan z
    rows, bounds_rhs = [], []
    for resource in range(3):
        row = np.zeros(num_vars)
        for index, (j, c) in enumerate(columns):
            row[index] = table.times[j][resource][c]
        row[-1] = -1.0
        rows.append(row)
        bounds_rhs.append(0.0)
    equality = np.zeros((instance.num_jobs, num_vars))
    for index, (j, _) in enumerate(columns):
        equality[j, index] = 1.0
    for j in range(instance.num_jobs):
        row = np.zeros(num_vars)
        for index, (job, c) in enumerate(columns):
            if job == j:
                row[index] = sum(float(t[c]) for t in table.times[j])
        row[-1] = -1.0
        rows.append(row)
        bounds_rhs.append(0.0)
    objective = np.zeros(num_vars)
    objective[-1] = 1.0
    result = linprog(objective, A_ub=np.array(rows), b_ub=bounds_rhs, A_eq=equality,
                     b_eq=np.ones(instance.num_jobs), bounds=[(0, None)] * num_vars,
                     method="highs")
    if not result.success:
        raise RuntimeError(f"lower-bound LP failed: {result.message}")
    return max(float(result.fun) * (1 - 1e-9), latency_lower_bound(instance))


def evaluate_all(instance: OffloadInstance) -> dict[str, float]:
    """Makespan of every heuristic on ``instance``."""
    return {name: simulate(instance, planner(instance)).makespan_s
            for name, planner in HEURISTICS.items()}
