"""Planners for heterogeneous pipeline training: ``HEURISTICS[name](instance) -> PipelinePlan``.

- ``equal_layers``: every device its own stage in the given order, the same number of layers
  per stage (memory permitting; the closest feasible split otherwise).
- ``pipedream_dp``: PipeDream's dynamic program over (layer prefix, number of machines),
  which assumes identical machines; here all devices are taken at the mean speed, mean
  bandwidth and mean memory. Its stages (with replica counts) are then filled with the real
  devices in their given order, as a homogeneity-assuming planner would.
- ``cluster_dp``: cluster devices by capability (log speed, log bandwidth; Ward linkage,
  1..4 clusters), order the clusters (every order, clusters may be left idle), split each
  cluster into 1..n equal sub-stages, then a dynamic program over layer ranges with each
  stage's real speed, bandwidth and memory. Candidates are ranked by the closed form (a lower
  bound) and simulated until no remaining bound can beat the best simulated time.

All DPs minimise the slowest pipeline element per iteration:
``max(M (F_s + B_s) + R_s over stages, M X_s over boundaries)`` subject to memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from envs.hetero_pipeline.closed_form import lower_bound_s
from envs.hetero_pipeline.instance import Device, PipelineInstance, PipelinePlan
from envs.hetero_pipeline.partition import (
    Groups,
    minmax_cuts,
    minmax_split,
    pair_grid,
    single_device_plan,
    stage_time_matrix,
)
from envs.hetero_pipeline.simulator import (
    iteration_time,
    stage_costs,
)


def layer_dp(instance: PipelineInstance, groups: Groups) -> list[int] | None:
    """Best cuts for a fixed ordered grouping, by the min-max DP with real device costs."""
    split = layer_dp_split(instance, groups)
    return None if split is None else split[0]


def layer_dp_split(instance: PipelineInstance, groups: Groups
                   ) -> tuple[list[int], float] | None:
    """:func:`layer_dp`'s cuts and the bottleneck stage or link time the DP reaches."""
    if len(groups) > instance.num_layers:
        return None
    return minmax_split(*stage_time_matrix(instance, groups))


def select_by_simulation(instance: PipelineInstance,
                         candidates: Iterable[tuple[Groups, Sequence[int]]]) -> PipelinePlan | None:
    """Simulate candidates in increasing closed-form bound; stop once no bound can win."""
    scored = []
    for groups, cuts in candidates:
        costs = stage_costs(instance, groups, np.array([cuts]))
        if costs.fits_memory[0]:
            bound = lower_bound_s(costs, instance.num_microbatches)[0]
            scored.append((bound, groups, tuple(cuts)))
    return best_by_simulation(instance, scored)


def best_by_simulation(instance: PipelineInstance, scored: list,
                       best_plan: PipelinePlan | None = None) -> PipelinePlan | None:
    """Simulate ``(lower bound, groups, cuts)`` candidates in increasing bound order until the
    bound reaches the best simulated time; return the best plan (``best_plan`` if none beats it)."""
    best_time = np.inf if best_plan is None else iteration_time(instance, best_plan)
    for bound, groups, cuts in sorted(scored, key=lambda item: item[0]):
        if bound >= best_time:
            break
        plan = PipelinePlan.from_groups(groups, cuts)
        time = iteration_time(instance, plan)
        if time < best_time:
            best_time, best_plan = time, plan
    return best_plan


def equal_layers(instance: PipelineInstance) -> PipelinePlan:
    K, L = instance.num_devices, instance.num_layers
    num_stages = min(K, L)
    groups = tuple(tuple(range(s, K, num_stages)) for s in range(num_stages))
    while num_stages >= 1:
        stage, link = stage_time_matrix(instance, groups)
        starts, stops = pair_grid(L)
        counts = [np.where(np.isfinite(m), (stops - starts).astype(float), np.inf) for m in stage]
        cuts = minmax_cuts(counts, [np.zeros(L + 1)] * (num_stages - 1))
        if cuts is not None:
            return PipelinePlan.from_groups(groups, cuts)
        num_stages -= 1
        groups = tuple(tuple(range(s, K, num_stages)) for s in range(num_stages))
    return single_device_plan(instance)


def pipedream_dp(instance: PipelineInstance) -> PipelinePlan:
    K, L, M = instance.num_devices, instance.num_layers, instance.num_microbatches
    mean = Device("mean", float(instance.speeds.mean()), float(instance.memories.mean()),
                  float(np.mean([d.bandwidth_mbps for d in instance.devices])))
    homogeneous = PipelineInstance(devices=(mean,) * K, model=instance.model,
                                   num_microbatches=M, latency_s=instance.latency_s,
                                   memory_factor=instance.memory_factor)
    # stage_cost[r][i, j]: layers i..j-1 on r identical replicas
    stage_cost = {r: stage_time_matrix(homogeneous, (tuple(range(r)),))[0][0]
                  for r in range(1, K + 1)}
    act = np.concatenate([[0.0], instance.model.activation_bytes])
    per_byte = 1.0 / homogeneous.bytes_per_s[0]
    # A[j][m]: slowest element of the best pipeline for layers 0..j-1 on m machines.
    A = np.full((L + 1, K + 1), np.inf)
    back: dict[tuple[int, int], tuple[int, int]] = {}
    for j in range(1, L + 1):
        for m in range(1, K + 1):
            A[j, m] = stage_cost[m][0, j]
            back[(j, m)] = (0, m)
            for i in range(1, j):
                for r in range(1, m):
                    link = M * (instance.latency_s + act[i] * per_byte / min(r, m - r))
                    value = max(A[i, m - r], link, stage_cost[r][i, j])
                    if value < A[j, m]:
                        A[j, m] = value
                        back[(j, m)] = (i, r)
    for m in np.argsort(A[L, 1:], kind="stable") + 1:
        if not np.isfinite(A[L, m]):
            break
        sizes, cuts, j, left = [], [L], L, int(m)
        while j > 0:
            i, r = back[(j, left)]
            sizes.append(r)
            cuts.append(i)
            j, left = i, left - r
        sizes, cuts = sizes[::-1], cuts[::-1]
        offsets = np.cumsum([0] + sizes)
        groups = tuple(tuple(range(offsets[s], offsets[s + 1])) for s in range(len(sizes)))
        plan = PipelinePlan.from_groups(groups, cuts)
        if np.isfinite(iteration_time(instance, plan)):
            return plan
    return single_device_plan(instance)


def capability_clusters(instance: PipelineInstance, num_clusters: int) -> list[list[int]]:
    """Devices clustered by (log speed, log bandwidth) with Ward linkage, fastest cluster first."""
    if num_clusters == 1 or instance.num_devices == 1:
        return [list(range(instance.num_devices))]
    features = np.column_stack([np.log(instance.speeds), np.log(instance.bytes_per_s)])
    labels = fcluster(linkage(features, method="ward"), t=num_clusters, criterion="maxclust")
    clusters = [list(np.flatnonzero(labels == label)) for label in np.unique(labels)]
    return sorted(clusters, key=lambda c: -instance.speeds[c].mean())


def _sub_stages(instance: PipelineInstance, cluster: list[int], parts: int
                ) -> tuple[tuple[int, ...], ...]:
    """Split a cluster into ``parts`` groups of near-equal total speed (greedy, fastest first)."""
    groups: list[list[int]] = [[] for _ in range(parts)]
    totals = np.zeros(parts)
    for device in sorted(cluster, key=lambda d: -instance.speeds[d]):
        target = int(np.argmin(totals))
        groups[target].append(int(device))
        totals[target] += instance.speeds[device]
    return tuple(tuple(sorted(g)) for g in groups)


def cluster_dp(instance: PipelineInstance, max_clusters: int = 4) -> PipelinePlan:
    K, L = instance.num_devices, instance.num_layers
    candidates: dict[Groups, list[int]] = {}
    seen_clusterings = set()
    for num_clusters in range(1, min(K, max_clusters) + 1):
        clusters = capability_clusters(instance, num_clusters)
        key = tuple(tuple(c) for c in clusters)
        if key in seen_clusterings:
            continue
        seen_clusterings.add(key)
        for used in range(1, len(clusters) + 1):
            for order in itertools.permutations(range(len(clusters)), used):
                chosen = [clusters[c] for c in order]
                for parts in itertools.product(*(range(1, len(c) + 1) for c in chosen)):
                    if sum(parts) > L:
                        continue
                    groups = tuple(g for c, p in zip(chosen, parts, strict=True)
                                   for g in _sub_stages(instance, c, p))
                    if groups in candidates:
                        continue
                    cuts = layer_dp(instance, groups)
                    if cuts is not None:
                        candidates[groups] = cuts
    plan = select_by_simulation(instance, candidates.items())
    return plan if plan is not None else single_device_plan(instance)


HEURISTICS: dict[str, Callable[[PipelineInstance], PipelinePlan]] = {
    "equal_layers": equal_layers,
    "pipedream_dp": pipedream_dp,
    "cluster_dp": cluster_dp,
}


def expert_action(env, plan: PipelinePlan) -> int:
    """The ``HeteroPipelineEnv`` action that moves its current state towards ``plan``.

    Valid while the env has followed ``plan`` so far: devices join the env stage that holds
    their plan stage, plan stages are opened at the position that keeps the plan's order, and
    cuts are the plan's stage ends.
    """
    env = env.unwrapped
    if env.phase == "assign":
        stage_of = {d: s for s, stage in enumerate(plan.stages) for d in stage.devices}
        target = stage_of.get(env.order[env.cursor])
        if target is None:
            return env.idle_action
        opened = [stage_of[group[0]] for group in env.groups]
        if target in opened:
            return opened.index(target)
        return env.new_stage_action + sum(1 for t in opened if t < target)
    return plan.stages[len(env.cuts) - 1].stop - 1


class PlanScheduler:
    """A planner as a :class:`agents.scheduler.Scheduler` on ``HeteroPipelineEnv``.

    On the first decision of an episode it plans the env's instance, then replays the plan
    as actions (the env is read for its instance and state).
    """

    def __init__(self, env, planner: Callable[[PipelineInstance], PipelinePlan]) -> None:
        self.env, self.planner = env, planner
        self.plan: PipelinePlan | None = None

    def reset(self) -> None:
        self.plan = None

    def act(self, observation, action_mask: np.ndarray) -> int:
        if self.plan is None:
            self.plan = self.planner(self.env.unwrapped.instance)
        action = expert_action(self.env, self.plan)
        if not action_mask[action]:  # the env's conservative mask forbids this path
            return int(np.flatnonzero(action_mask)[0])
        return action
