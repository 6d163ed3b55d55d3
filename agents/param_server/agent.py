"""The parameter-server agent: ``two_step`` plus a learned choice among partition variants.

``plan(instance)`` builds the candidates of :mod:`agents.param_server.portfolio` (candidate 0
is ``two_step``'s own partition), scores them with a learned linear ranker over
:data:`agents.param_server.portfolio.FEATURES`, refines ``two_step``'s candidate and the
``top_k`` best-scored others with ``refine_moves``, and keeps the allocation with the lowest
simulated iteration time. ``two_step``'s own result is always among those compared, so the
agent is never slower than ``two_step`` on the simulator's model; the ranker decides which
other variants are worth refining (the expensive step).

The model file (``models/param_server_agent.ranker.json``) holds the weights, ``top_k`` and
the training record; :mod:`agents.param_server.train` writes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.algos.listwise import RankerFileError as AgentModelError
from agents.algos.listwise import read_ranker
from agents.param_server.portfolio import FEATURES, candidates, feature_matrix
from envs import PROBLEMS
from envs.param_server.instance import Allocation, ParamServerInstance
from envs.shipped import MODELS_DIR

DEFAULT_MODEL = MODELS_DIR / PROBLEMS["param_server"].agent


@dataclass
class PlanDetails:
    allocation: Allocation
    iteration_s: float
    two_step_s: float
    chosen: str
    refined: int
    candidates: int
    wall_s: float


@dataclass
class ParamServerAgent:
    weights: np.ndarray
    top_k: int

    def scores(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weights

    def plan_details(self, instance: ParamServerInstance) -> PlanDetails:
        started = time.perf_counter()
        found = candidates(instance)
        order = [int(i) for i in np.argsort(-self.scores(feature_matrix(found)), kind="stable")
                 if i != 0][: self.top_k]
        best_state, best_index, two_step_s = None, 0, float("nan")
        for index in [0, *order]:
            state = found[index].refined()
            value = state.estimated_iteration_s
            if index == 0:
                two_step_s = value
            if best_state is None or value < best_state.estimated_iteration_s * (1 - 1e-12):
                best_state, best_index = state, index
        variant = found[best_index].variant
        return PlanDetails(
            allocation=best_state.allocation(), iteration_s=best_state.estimated_iteration_s,
            two_step_s=two_step_s,
            chosen="two_step" if best_index == 0 else
            f"seed {variant.seed}, ufactor {variant.ufactor}, c {variant.compute_share}",
            refined=1 + len(order), candidates=len(found), wall_s=time.perf_counter() - started)

    def plan(self, instance: ParamServerInstance) -> Allocation:
        return self.plan_details(instance).allocation


def load_agent(path: str | Path = DEFAULT_MODEL) -> ParamServerAgent:
    data, weights = read_ranker(path, FEATURES, "parameter-server agent",
                                PROBLEMS["param_server"].env_id)
    top_k = data.get("top_k")
    if not isinstance(top_k, int) or top_k < 0:
        raise AgentModelError(f"{path}: field 'top_k' must be an integer >= 0, got {top_k!r}")
    return ParamServerAgent(weights, top_k)
