"""Compare offloading planners, a trained agent and the CP-SAT optimum on the same instances."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from agents.compare import Outcome
from agents.offload.planning import plan_with_scheduler
from agents.scheduler import Scheduler
from envs.offload import OffloadInstance, simulate
from heuristics.exact import offload_optimal
from heuristics.offload import HEURISTICS, lower_bound


@dataclass(kw_only=True)
class InstanceOutcome(Outcome):
    """Makespans (``objective``) of every scheduler on one instance; the reference is the
    optimum or, without CP-SAT, the lower bound (``reference_name``)."""

    bandwidth_mbps: float
    num_jobs: int
    proven_optimal: bool

    @property
    def makespan_s(self) -> dict[str, float]:
        return self.objective


def evaluate_instance(instance: OffloadInstance, agents: dict[str, Scheduler] | None = None,
                      exact: bool = True, exact_time_limit_s: float = 30.0,
                      joint_time_limit_s: float = 2.0) -> InstanceOutcome:
    """Makespan of each heuristic and agent; reference is the optimum (or the lower bound). An
    agent that does not complete the instance is a failure (``inf``, reason in ``failures``)."""
    if exact:
        result = offload_optimal(instance, time_limit_s=exact_time_limit_s)
        reference_s, reference, proven = result.makespan_s, "optimum", result.proven_optimal
    else:
        reference_s, reference, proven = lower_bound(instance), "lower_bound", False
    outcome = InstanceOutcome(reference_s, reference_name=reference,
                              bandwidth_mbps=instance.bandwidth_mbps,
                              num_jobs=instance.num_jobs, proven_optimal=proven)
    for name, planner in HEURISTICS.items():
        started = time.perf_counter()
        plan = planner(instance, joint_time_limit_s) if name == "joint" else planner(instance)
        outcome.plan_seconds[name] = time.perf_counter() - started
        outcome.makespan_s[name] = simulate(instance, plan).makespan_s
    for name, scheduler in (agents or {}).items():
        outcome.record(name, functools.partial(_agent_makespan, scheduler, instance))
    return outcome


def _agent_makespan(scheduler: Scheduler, instance: OffloadInstance) -> tuple[float, float]:
    """Makespan of the agent's own plan and the seconds it took to plan (raises
    :class:`agents.evaluate.IncompleteEpisode` when it did not place every job)."""
    started = time.perf_counter()
    plan = plan_with_scheduler(scheduler, instance, _env_kwargs(scheduler))
    seconds = time.perf_counter() - started
    return simulate(instance, plan).makespan_s, seconds


def _env_kwargs(scheduler: Scheduler) -> dict:
    model = getattr(scheduler, "model", None)
    if model is None:
        return {}
    max_jobs, max_cuts = model.observation_space["cut_features"].shape[:2]
    return {"max_jobs": max_jobs, "max_cuts": max_cuts}
