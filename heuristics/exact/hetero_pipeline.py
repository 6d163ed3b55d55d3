"""Exact optimum of the heterogeneous pipeline plan for small device sets (K <= 6).

Enumerates every ordered grouping of every non-empty subset of devices into ``S`` stages
(devices outside the subset stay idle; groupings that only swap identical devices are
skipped) and, for each, every cut vector ``0 < c_1 < ... < c_{S-1} < L``. The closed form of
:mod:`envs.hetero_pipeline.closed_form` is a lower bound on the simulated time, so candidates
are simulated in increasing bound order and the search stops when the next bound is no
better than the best simulated time: the result is optimal for the event simulation, not
just for the closed form. ``cluster_dp``'s plan seeds the incumbent.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

from envs.hetero_pipeline.closed_form import lower_bound_s
from envs.hetero_pipeline.instance import InstanceError, PipelineInstance, PipelinePlan
from envs.hetero_pipeline.simulator import (
    group_constants,
    iteration_time,
    stage_costs,
    total_work_lower_bound,
)
from heuristics.hetero_pipeline import best_by_simulation, cluster_dp

MAX_EXACT_DEVICES = 6


@lru_cache(maxsize=64)
def _all_cuts(num_layers: int, num_stages: int) -> np.ndarray:
    combos = list(itertools.combinations(range(1, num_layers), num_stages - 1))
    inner = np.array(combos, dtype=int).reshape(len(combos), num_stages - 1)
    count = len(combos)
    return np.hstack([np.zeros((count, 1), int), inner, np.full((count, 1), num_layers)])


def ordered_groupings(instance: PipelineInstance):
    """Yield every distinct ordered grouping (identical devices are interchangeable)."""
    K, L = instance.num_devices, instance.num_layers
    kinds = {}
    device_kind = [kinds.setdefault((d.speed, d.memory_bytes, d.bandwidth_mbps), len(kinds))
                   for d in instance.devices]
    seen = set()
    for num_stages in range(1, min(K, L) + 1):
        for labels in itertools.product(range(-1, num_stages), repeat=K):
            if len(set(labels) - {-1}) != num_stages:
                continue
            groups = tuple(tuple(d for d in range(K) if labels[d] == s)
                           for s in range(num_stages))
            key = tuple(tuple(sorted(device_kind[d] for d in g)) for g in groups)
            if key in seen:
                continue
            seen.add(key)
            yield groups


def pipeline_optimal(instance: PipelineInstance) -> PipelinePlan:
    """The plan with the least simulated iteration time (memory respected), K <= 6."""
    if instance.num_devices > MAX_EXACT_DEVICES:
        raise InstanceError(f"pipeline_optimal enumerates groupings: num_devices must be <= "
                            f"{MAX_EXACT_DEVICES}, got {instance.num_devices}")
    incumbent = cluster_dp(instance)
    best_time = iteration_time(instance, incumbent)
    work = total_work_lower_bound(instance) * instance.speeds.sum()
    M = instance.num_microbatches
    pool: list[tuple[float, tuple, np.ndarray]] = []
    for groups in ordered_groupings(instance):
        const = group_constants(instance, groups)
        if work / const.speed_sum.sum() >= best_time:
            continue
        cuts = _all_cuts(instance.num_layers, len(groups))
        costs = stage_costs(instance, groups, cuts, const)
        bounds = lower_bound_s(costs, M)
        keep = costs.fits_memory & (bounds < best_time)
        pool.extend((float(b), groups, c) for b, c in zip(bounds[keep], cuts[keep], strict=True))
    return best_by_simulation(instance, pool, incumbent)
