"""Stage cost matrices and the contiguous min-max layer split of the heterogeneous pipeline.

Model computations the env needs (its action masks and completions) as well as the planners in
:mod:`heuristics.hetero_pipeline`, so they live in the env's package.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from envs.hetero_pipeline.instance import PipelineInstance, PipelinePlan
from envs.hetero_pipeline.simulator import group_constants, inflight_microbatches, iteration_time

Groups = tuple[tuple[int, ...], ...]


def pair_grid(num_layers: int) -> tuple[np.ndarray, np.ndarray]:
    starts, stops = np.meshgrid(np.arange(num_layers + 1), np.arange(num_layers + 1),
                                indexing="ij")
    return starts, stops


def stage_time_matrix(instance: PipelineInstance, groups: Groups) -> tuple[list[np.ndarray],
                                                                           list[np.ndarray]]:
    """``stage[s][i, j]``: ``M(F+B)+R`` of stage ``s`` on layers ``i..j-1`` (inf if it does not
    fit in memory or ``i >= j``); ``link[s][j]``: ``M X_s`` when stage ``s`` ends at ``j``."""
    model, M, L = instance.model, instance.num_microbatches, instance.num_layers
    const = group_constants(instance, groups)
    starts, stops = pair_grid(L)
    valid = starts < stops
    inflight = inflight_microbatches(len(groups), M)
    stage, link = [], []
    for s in range(len(groups)):
        work = (model.forward_prefix_s[stops] - model.forward_prefix_s[starts]
                + model.backward_prefix_s[stops] - model.backward_prefix_s[starts])
        params = model.param_prefix_bytes[stops] - model.param_prefix_bytes[starts]
        stash = model.stash_prefix_bytes[stops] - model.stash_prefix_bytes[starts]
        n = const.size[s]
        ring = (2 * (n - 1) * (instance.latency_s + params / (n * const.min_bytes_per_s[s]))
                if n > 1 else 0.0)
        cost = M * work / const.speed_sum[s] + ring
        fits = np.all(instance.memory_factor * params[..., None]
                      + inflight[s] * const.shares[s] * stash[..., None]
                      <= const.memories[s], axis=-1)
        stage.append(np.where(valid & fits, cost, np.inf))
        if s < len(groups) - 1:
            per_byte = max(const.per_byte_s[s], const.per_byte_s[s + 1])
            bytes_at = np.concatenate([[0.0], model.activation_bytes])
            link.append(M * (instance.latency_s + bytes_at * per_byte))
    return stage, link


def minmax_cuts(stage: Sequence[np.ndarray], link: Sequence[np.ndarray]) -> list[int] | None:
    """Contiguous split minimising the largest stage/link cost; ``None`` if nothing fits."""
    split = minmax_split(stage, link)
    return None if split is None else split[0]


def minmax_split(stage: Sequence[np.ndarray], link: Sequence[np.ndarray]
                 ) -> tuple[list[int], float] | None:
    """:func:`minmax_cuts` and the largest stage/link cost it reaches; ``None`` if nothing
    fits."""
    num_stages = len(stage)
    L = stage[0].shape[0] - 1
    best = stage[0][0].copy()          # best[j]: stages 0..s cover layers 0..j-1
    choice = []
    for s in range(1, num_stages):
        carried = np.maximum(best, link[s - 1])
        candidates = np.maximum(carried[:, None], stage[s])
        choice.append(np.argmin(candidates, axis=0))
        best = candidates[choice[-1], np.arange(L + 1)]
    if not np.isfinite(best[L]):
        return None
    cuts = [L]
    for s in range(num_stages - 1, 0, -1):
        cuts.append(int(choice[s - 1][cuts[-1]]))
    cuts.append(0)
    return cuts[::-1], float(best[L])


def single_device_plan(instance: PipelineInstance) -> PipelinePlan:
    """The whole model on the fastest device that can hold it (the most memory otherwise)."""
    plans = [PipelinePlan.from_groups([(d,)], [0, instance.num_layers])
             for d in range(instance.num_devices)]
    feasible = [(iteration_time(instance, plan), plan) for plan in plans]
    feasible = [item for item in feasible if np.isfinite(item[0])]
    if feasible:
        return min(feasible, key=lambda item: item[0])[1]
    return plans[int(np.argmax(instance.memories))]
