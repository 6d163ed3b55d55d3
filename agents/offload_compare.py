"""Compare offloading planners, a trained agent and the CP-SAT optimum on the same instances."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agents.planning import plan_with_scheduler
from agents.scheduler import Scheduler
from envs.offload import OffloadInstance, simulate
from heuristics.exact import offload_optimal
from heuristics.offload import HEURISTICS, lower_bound


@dataclass
class InstanceOutcome:
    """Makespans of every scheduler on one instance, and the reference it is divided by."""

    bandwidth_mbps: float
    num_jobs: int
    reference_s: float
    reference: str  # "optimum" or "lower_bound"
    proven_optimal: bool
    makespan_s: dict[str, float] = field(default_factory=dict)
    plan_seconds: dict[str, float] = field(default_factory=dict)

    def ratio(self, name: str) -> float:
        return self.makespan_s[name] / self.reference_s


def evaluate_instance(instance: OffloadInstance, agents: dict[str, Scheduler] | None = None,
                      exact: bool = True, exact_time_limit_s: float = 30.0,
                      joint_time_limit_s: float = 2.0) -> InstanceOutcome:
    """Makespan of each heuristic and agent; reference is the optimum (or the lower bound)."""
    if exact:
        result = offload_optimal(instance, time_limit_s=exact_time_limit_s)
        reference_s, reference, proven = result.makespan_s, "optimum", result.proven_optimal
    else:
        reference_s, reference, proven = lower_bound(instance), "lower_bound", False
    outcome = InstanceOutcome(instance.bandwidth_mbps, instance.num_jobs, reference_s,
                              reference, proven)
    for name, planner in HEURISTICS.items():
        started = time.perf_counter()
        plan = planner(instance, joint_time_limit_s) if name == "joint" else planner(instance)
        outcome.plan_seconds[name] = time.perf_counter() - started
        outcome.makespan_s[name] = simulate(instance, plan).makespan_s
    for name, scheduler in (agents or {}).items():
        started = time.perf_counter()
        plan = plan_with_scheduler(scheduler, instance, _env_kwargs(scheduler))
        outcome.plan_seconds[name] = time.perf_counter() - started
        outcome.makespan_s[name] = simulate(instance, plan).makespan_s
    return outcome


def _env_kwargs(scheduler: Scheduler) -> dict:
    model = getattr(scheduler, "model", None)
    if model is None:
        return {}
    max_jobs, max_cuts = model.observation_space["cut_features"].shape[:2]
    return {"max_jobs": max_jobs, "max_cuts": max_cuts}


def summarise(outcomes: Sequence[InstanceOutcome], label: str) -> list[dict]:
    """One row per scheduler: mean, p95 and max of makespan / reference."""
    rows = []
    for name in outcomes[0].makespan_s:
        ratios = np.array([outcome.ratio(name) for outcome in outcomes])
        rows.append({"group": label, "scheduler": name, "instances": len(ratios),
                     "reference": outcomes[0].reference, "mean_ratio": float(ratios.mean()),
                     "p95_ratio": float(np.percentile(ratios, 95)),
                     "max_ratio": float(ratios.max()),
                     "median_plan_ms": 1e3 * float(np.median(
                         [outcome.plan_seconds[name] for outcome in outcomes]))})
    return rows
