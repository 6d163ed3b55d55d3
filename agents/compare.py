"""Heuristics and trained schedulers on the same seeded instances of any pipesched env; the
reference of each instance is its best heuristic (offloading against the CP-SAT optimum is
:mod:`agents.offload.compare`)."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from agents.config import load_config
from agents.model_check import load_for_env
from envs import PROBLEMS, problem_for
from envs.scheduler import IncompleteEpisode, require_complete, run_episode
from envs.shipped import MODELS_DIR

#: env id -> the shipped agent of its problem (the problem table's ``agent``)
SHIPPED_MODELS = {problem.env_id: MODELS_DIR / problem.agent for problem in PROBLEMS.values()}

#: name -> a function of the instance seed returning (objective, seconds spent planning); it
#: raises :class:`IncompleteEpisode` when the scheduler did not complete the instance
Contender = Callable[[int], tuple[float, float]]


@dataclass
class Outcome:
    """Objective of every scheduler on one instance and the reference it is divided by:
    ``reference_name`` says what that is (the best heuristic's objective here; the CP-SAT
    optimum or a lower bound in :mod:`agents.offload.compare`). A scheduler that did not
    complete the instance has objective ``inf`` and its reason in ``failures``."""

    reference: float
    objective: dict[str, float] = field(default_factory=dict)
    plan_seconds: dict[str, float] = field(default_factory=dict)
    reference_name: str = "best_heuristic"
    failures: dict[str, str] = field(default_factory=dict)

    def record(self, name: str, contender: Callable[[], tuple[float, float]]) -> None:
        """Play ``contender`` and store its objective and time, or its failure (``inf``)."""
        started = time.perf_counter()
        try:
            self.objective[name], self.plan_seconds[name] = contender()
        except IncompleteEpisode as failure:
            self.objective[name] = math.inf
            self.plan_seconds[name] = time.perf_counter() - started
            self.failures[name] = str(failure)


def _timed(run: Callable[[], float]) -> tuple[float, float]:
    started = time.perf_counter()
    value = run()
    return value, time.perf_counter() - started


def _spark_contenders(env_id: str, env_kwargs: dict, models: dict[str, str]
                      ) -> tuple[dict, dict]:
    from envs.spark_dag.env import SparkDagShopEnv
    from heuristics.spark_dag import HEURISTICS, make_heuristic

    graph_env = SparkDagShopEnv(observation_mode="graph", **env_kwargs)
    padded_env = SparkDagShopEnv(**{**env_kwargs, "observation_mode": "padded"})

    def episode(env: Any, scheduler: Any) -> Contender:
        return lambda seed: _timed(lambda: require_complete(
            run_episode(env, scheduler, seed=seed))["mean_jct_s"])

    heuristics = {name: episode(graph_env, make_heuristic(name)) for name in HEURISTICS}
    agents = {}
    for name, path in models.items():
        graph = path.endswith(".json")
        env = graph_env if graph else padded_env
        agents[name] = episode(env, load_for_env(path, env_id, env.observation_space))
    return heuristics, agents


def _planner_contenders(env_id: str, env_kwargs: dict, models: dict[str, str]
                        ) -> tuple[dict, dict]:
    """Param server and pipeline: heuristics and planner agents (the shipped rankers) plan the
    instance and the problem's simulator scores it; a step-wise agent plays it through the env
    (whose final ``info`` holds the same simulated figure)."""
    problem = problem_for(env_id)
    if not problem.simulate:
        raise ValueError(f"no comparison of whole plans for env {env_id!r}: its objective "
                         f"comes from episodes only")
    env = gym.make(env_id, **env_kwargs).unwrapped
    heuristic_plans, simulate = problem.load("heuristics"), problem.load("simulate")

    def score(instance: Any, plan: Any) -> float:
        return getattr(simulate(instance, plan), problem.objective)

    cache: dict[int, Any] = {}

    def instance(seed: int) -> Any:
        if seed not in cache:
            env.reset(seed=seed)
            cache.clear()
            cache[seed] = env.instance
        return cache[seed]

    def planner(plan: Callable) -> Contender:
        return lambda seed: _timed(lambda: score(instance(seed), plan(instance(seed))))

    def agent(loaded: Any) -> Contender:
        if hasattr(loaded, "plan"):  # a planner agent: the whole plan at once
            return planner(loaded.plan)

        def objective(seed: int) -> float:
            info = run_episode(env, loaded, options={"instance": instance(seed)})
            return require_complete(info)[problem.objective]
        return lambda seed: _timed(lambda: objective(seed))

    heuristics = {name: planner(plan) for name, plan in heuristic_plans.items()}
    agents = {name: agent(load_for_env(path, env_id, env.observation_space))
              for name, path in models.items()}
    return heuristics, agents


def contenders(env_id: str, models: dict[str, str]) -> tuple[dict, dict]:
    """``(heuristics, agents)`` of ``env_id``: name -> :data:`Contender`."""
    env_kwargs = load_config(env_id).env_kwargs
    name = problem_for(env_id).name
    if name == "spark_dag":
        return _spark_contenders(env_id, env_kwargs, models)
    if name == "offload":
        return _offload_contenders(env_id, env_kwargs, models)
    return _planner_contenders(env_id, env_kwargs, models)


def run_outcomes(heuristics: dict[str, Contender], agents: dict[str, Contender],
                 seeds: Iterable[int]) -> list[Outcome]:
    """The :class:`Outcome` of every seed; the reference is the best heuristic that completed
    the instance (a failed one never is), and no completed heuristic at all is an error."""
    outcomes = []
    for seed in seeds:
        outcome = Outcome(math.nan)
        for name, contender in {**heuristics, **agents}.items():
            outcome.record(name, functools.partial(contender, seed))
        outcome.reference = min(outcome.objective[name] for name in heuristics)
        if not math.isfinite(outcome.reference):
            raise IncompleteEpisode(f"seed {seed}: no heuristic completed the instance, so it "
                                    f"has no reference ({outcome.failures})")
        outcomes.append(outcome)
    return outcomes


def summarise(outcomes: Sequence[Outcome], label: str = "all") -> list[dict]:
    """One row per scheduler: mean, p95 and max of objective / reference over every instance.
    An instance the scheduler did not complete counts in ``failed`` (its reasons in
    ``failures``) and as an infinite ratio, so the mean and max of a scheduler that failed
    anywhere are ``inf``: never a mean over the instances it happened to finish."""
    rows = []
    for name in outcomes[0].objective:
        ratios = np.array([o.objective[name] / o.reference for o in outcomes])
        failures = sorted({o.failures[name] for o in outcomes if name in o.failures})
        rows.append({"group": label, "scheduler": name, "instances": len(ratios),
                     "reference": outcomes[0].reference_name, "mean_ratio": float(ratios.mean()),
                     "p95_ratio": _percentile(ratios, 95), "max_ratio": float(ratios.max()),
                     "median_plan_ms": 1e3 * float(np.median([o.plan_seconds[name]
                                                              for o in outcomes])),
                     "failed": sum(name in o.failures for o in outcomes), "failures": failures})
    return rows


def _percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile`` where interpolating between two infinite values is ``inf``, not NaN."""
    with np.errstate(invalid="ignore"):
        value = float(np.percentile(values, q))
    return math.inf if math.isnan(value) else value


def _offload_contenders(env_id: str, env_kwargs: dict, models: dict[str, str]
                        ) -> tuple[dict, dict]:
    from agents.offload.compare import _env_kwargs
    from agents.offload.planning import plan_with_scheduler
    from envs.offload import simulate
    from heuristics.offload import HEURISTICS

    env = gym.make(env_id, **env_kwargs).unwrapped

    def instance(seed: int) -> Any:
        env.reset(seed=seed)
        return env.instance

    def planner(name: str, plan: Callable) -> Contender:
        def objective(seed: int) -> float:
            inst = instance(seed)
            return simulate(inst, plan(inst, 2.0) if name == "joint" else plan(inst)).makespan_s
        return lambda seed: _timed(lambda: objective(seed))

    def agent(scheduler: Any) -> Contender:
        def objective(seed: int) -> float:
            inst = instance(seed)
            return simulate(inst, plan_with_scheduler(scheduler, inst,
                                                      _env_kwargs(scheduler))).makespan_s
        return lambda seed: _timed(lambda: objective(seed))

    heuristics = {name: planner(name, plan) for name, plan in HEURISTICS.items()}
    agents = {name: agent(load_for_env(path, env_id, env.observation_space,
                                       check_shapes=False))
              for name, path in models.items()}
    return heuristics, agents
