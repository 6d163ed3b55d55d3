"""The heterogeneous-pipeline agent: ``cluster_dp`` plus learned improvement moves.

``plan(instance)`` starts from ``cluster_dp``'s plan and, for up to ``max_rounds`` rounds,
lists the moves of the current device grouping (:func:`moves`: a device to another stage,
to a new stage at any position, or idle; an idle device into a stage or a new stage; two
devices of different stages swapped; two adjacent stages swapped). Each move's grouping gets
its layers by ``cluster_dp``'s min-max DP (``heuristics.hetero_pipeline.layer_dp``); moves
that do not fit in memory are dropped. A learned linear ranker scores the rest
(:data:`FEATURES`), the ``top_k`` best-scored are simulated (the exact 1F1B simulation),
and the best one is taken if it is faster than the current plan; otherwise the search stops.
The current plan only ever gets faster, so the agent is never slower than ``cluster_dp``.

The model file (``models/hetero_pipeline_agent.ranker.json``) holds the weights,
``top_k``, ``max_rounds`` and the training record (:mod:`agents.hetero_pipeline.train`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.algos.listwise import RankerFileError as AgentModelError
from agents.algos.listwise import read_ranker
from envs import PROBLEMS
from envs.hetero_pipeline.closed_form import estimate_iteration_s
from envs.hetero_pipeline.instance import PipelineInstance, PipelinePlan
from envs.hetero_pipeline.partition import Groups
from envs.hetero_pipeline.simulator import iteration_time
from envs.shipped import MODELS_DIR
from heuristics.hetero_pipeline import cluster_dp, layer_dp_split

DEFAULT_MODEL = MODELS_DIR / PROBLEMS["hetero_pipeline"].agent
MOVE_KINDS = ("to_idle", "to_stage", "to_new_stage", "idle_to_stage", "idle_to_new_stage",
              "swap_devices", "swap_stages")
FEATURES = ("bound_over_current", "bound_rank", "dp_over_current", "dp_rank",
            "stages_delta", "devices_delta", "log_speed_ratio", *MOVE_KINDS, "bias")


def moves(groups: Groups, num_devices: int) -> dict[Groups, str]:
    """Every grouping one move away from ``groups``, with the kind of move."""
    found: dict[Groups, str] = {}

    def add(candidate: list[list[int]], kind: str) -> None:
        key = tuple(tuple(sorted(g)) for g in candidate if g)
        if key and key != groups:
            found.setdefault(key, kind)

    used = {d for g in groups for d in g}
    for s, group in enumerate(groups):
        for device in group:
            rest = [[x for x in g if x != device] for g in groups]
            add(rest, "to_idle")
            for t in range(len(groups)):
                if t != s:
                    add([g + [device] if i == t else g for i, g in enumerate(rest)], "to_stage")
            for position in range(len(groups) + 1):
                add(rest[:position] + [[device]] + rest[position:], "to_new_stage")
    for device in (d for d in range(num_devices) if d not in used):
        base = [list(g) for g in groups]
        for t in range(len(groups)):
            add([g + [device] if i == t else g for i, g in enumerate(base)], "idle_to_stage")
        for position in range(len(groups) + 1):
            add(base[:position] + [[device]] + base[position:], "idle_to_new_stage")
    for s in range(len(groups)):
        for t in range(s + 1, len(groups)):
            for a in groups[s]:
                for b in groups[t]:
                    swapped = [list(g) for g in groups]
                    swapped[s] = [x for x in swapped[s] if x != a] + [b]
                    swapped[t] = [x for x in swapped[t] if x != b] + [a]
                    add(swapped, "swap_devices")
        if s + 1 < len(groups):
            order = list(groups)
            order[s], order[s + 1] = order[s + 1], order[s]
            add([list(g) for g in order], "swap_stages")
    return found


def dp_plan(instance: PipelineInstance, groups: Groups) -> tuple[PipelinePlan, float] | None:
    """The grouping's plan with min-max cuts and the DP's bottleneck value (None: no fit)."""
    split = layer_dp_split(instance, groups)
    if split is None:
        return None
    cuts, value = split
    return PipelinePlan.from_groups(groups, cuts), value


@dataclass
class Neighbourhood:
    plans: list[PipelinePlan]
    features: np.ndarray


def neighbourhood(instance: PipelineInstance, plan: PipelinePlan, plan_s: float,
                  plan_dp: float) -> Neighbourhood:
    """The feasible moves of ``plan`` and their :data:`FEATURES` (scale-free)."""
    groups = tuple(tuple(stage.devices) for stage in plan.stages)
    used = sum(len(g) for g in groups)
    speed_ratio = np.log(instance.speeds.max() / instance.speeds.min()) / np.log(8.0)
    plans, rows = [], []
    for candidate, kind in moves(groups, instance.num_devices).items():
        made = dp_plan(instance, candidate)
        if made is None:
            continue
        new_plan, value = made
        plans.append(new_plan)
        rows.append([estimate_iteration_s(instance, new_plan) / plan_s - 1.0, 0.0,
                     value / plan_dp - 1.0, 0.0, len(candidate) - len(groups),
                     sum(len(g) for g in candidate) - used, speed_ratio,
                     *(float(kind == k) for k in MOVE_KINDS), 1.0])
    features = np.array(rows, dtype=float).reshape(len(rows), len(FEATURES))
    if len(rows):
        for column in (0, 2):
            ranks = np.argsort(np.argsort(features[:, column], kind="stable"), kind="stable")
            features[:, column + 1] = ranks / len(rows)
    return Neighbourhood(plans, features)


def plan_dp_value(instance: PipelineInstance, plan: PipelinePlan) -> float:
    made = dp_plan(instance, tuple(tuple(stage.devices) for stage in plan.stages))
    return made[1] if made is not None else float("inf")


class SearchCache:
    """Simulated times and neighbourhoods of one instance, computed once each (training
    revisits the same plans many times; the agent itself uses a fresh cache per plan)."""

    def __init__(self, instance: PipelineInstance) -> None:
        self.instance = instance
        self._times: dict[PipelinePlan, float] = {}
        self._near: dict[PipelinePlan, Neighbourhood] = {}

    def time(self, plan: PipelinePlan) -> float:
        if plan not in self._times:
            self._times[plan] = iteration_time(self.instance, plan)
        return self._times[plan]

    def neighbourhood(self, plan: PipelinePlan, plan_s: float) -> Neighbourhood:
        if plan not in self._near:
            self._near[plan] = neighbourhood(self.instance, plan, plan_s,
                                             plan_dp_value(self.instance, plan))
        return self._near[plan]


@dataclass
class HeteroPipelineAgent:
    weights: np.ndarray
    top_k: int
    max_rounds: int

    def improve(self, instance: PipelineInstance, plan: PipelinePlan,
                cache: SearchCache | None = None) -> tuple[PipelinePlan, float, int]:
        """``(plan, simulated seconds, simulations run)`` after the learned moves."""
        cache = cache or SearchCache(instance)
        current_s = cache.time(plan)
        simulated = 0
        for _ in range(self.max_rounds):
            near = cache.neighbourhood(plan, current_s)
            if not near.plans:
                break
            order = np.argsort(-(near.features @ self.weights), kind="stable")[: self.top_k]
            best, best_s = None, current_s
            for index in order:
                value = cache.time(near.plans[index])
                simulated += 1
                if value < best_s * (1 - 1e-9):
                    best, best_s = near.plans[index], value
            if best is None:
                break
            plan, current_s = best, best_s
        return plan, current_s, simulated

    def plan(self, instance: PipelineInstance) -> PipelinePlan:
        return self.improve(instance, cluster_dp(instance))[0]


def load_agent(path: str | Path = DEFAULT_MODEL) -> HeteroPipelineAgent:
    data, weights = read_ranker(path, FEATURES, "pipeline agent",
                                PROBLEMS["hetero_pipeline"].env_id)
    for key in ("top_k", "max_rounds"):
        if not isinstance(data.get(key), int) or data[key] < 1:
            raise AgentModelError(f"{path}: field '{key}' must be an integer >= 1, got "
                                  f"{data.get(key)!r}")
    return HeteroPipelineAgent(weights, data["top_k"], data["max_rounds"])
