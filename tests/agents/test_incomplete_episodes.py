"""Issue 24, case 4: an episode the scheduler did not complete itself (truncated, then finished
by the env's fallback) is a failed, counted outcome, never scored on the env's fallback plan."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from agents.compare import Outcome, _spark_contenders, run_outcomes, summarise
from agents.evaluate import IncompleteEpisode, incomplete_reason, require_complete, run_episode
from agents.offload.compare import evaluate_instance
from agents.offload.planning import plan_with_scheduler
from envs.offload import Layer, OffloadInstance, OffloadJob
from envs.spark_dag import Job, Stage
from envs.spark_dag.env import SparkDagShopEnv
from heuristics.spark_dag import make_heuristic


class GiveUpAfter:
    """A real Scheduler: ``valid_steps`` valid actions (the first allowed one), then only
    masked-out ones, so the env truncates the episode and completes it by its own rule."""

    def __init__(self, valid_steps: int = 0) -> None:
        self.valid_steps = valid_steps
        self.steps = 0

    def reset(self) -> None:
        self.steps = 0

    def act(self, observation: object, action_mask: np.ndarray) -> int:
        self.steps += 1
        allowed = action_mask if self.steps <= self.valid_steps else ~action_mask
        return int(np.flatnonzero(allowed)[0])


class FirstAllowed(GiveUpAfter):
    def __init__(self) -> None:
        super().__init__(valid_steps=10**9)


def two_jobs() -> OffloadInstance:
    job_a = OffloadJob("A", 1000, (Layer("a1", 1.0, 0.5, 500_000), Layer("a2", 2.0, 0.25, 4)))
    job_b = OffloadJob("B", 2_000_000, (Layer("b1", 0.5, 0.1, 1_000_000),))
    return OffloadInstance(bandwidth_mbps=8.0, latency_s=0.0, jobs=(job_a, job_b))


def offload_env() -> gym.Env:
    return gym.make("pipesched/DnnOffload-v0", max_jobs=2, max_cuts=4,
                    max_invalid_actions=3).unwrapped


def test_offload_final_info_says_who_completed_the_plan() -> None:
    env = offload_env()
    done = run_episode(env, FirstAllowed(), options={"instance": two_jobs()})
    assert done["complete"] is True and len(done["plan"]) == 2
    gave_up = run_episode(env, GiveUpAfter(1), options={"instance": two_jobs()})
    # the env still fills in job B all-local, but says that plan is not the scheduler's
    assert gave_up["complete"] is False and gave_up["invalid_actions"] == 3
    assert len(gave_up["plan"]) == 2
    assert "3 invalid actions" in incomplete_reason(gave_up)


def test_an_offload_agent_that_gives_up_has_no_plan() -> None:
    with pytest.raises(IncompleteEpisode, match="truncated before the scheduler completed"):
        plan_with_scheduler(GiveUpAfter(1), two_jobs(), {"max_cuts": 4})
    assert len(plan_with_scheduler(FirstAllowed(), two_jobs(), {"max_cuts": 4}).steps) == 2


def test_offload_comparison_counts_the_agent_as_failed() -> None:
    outcome = evaluate_instance(two_jobs(), {"quitter": GiveUpAfter(0)}, exact=False)
    assert outcome.objective["quitter"] == math.inf
    assert "invalid actions" in outcome.failures["quitter"]
    assert all(math.isfinite(outcome.objective[name])
               for name in outcome.objective if name != "quitter")
    row = {r["scheduler"]: r for r in summarise([outcome])}["quitter"]
    assert row["failed"] == 1 and row["mean_ratio"] == math.inf
    assert row["failures"] == [outcome.failures["quitter"]]


def test_param_server_truncation_is_incomplete(zipf_instance_small) -> None:
    env = gym.make("pipesched/ParamServer-v0", max_machines=8,
                   max_invalid_actions=2).unwrapped
    info = run_episode(env, GiveUpAfter(3), options={"instance": zipf_instance_small})
    assert info["complete"] is False
    with pytest.raises(IncompleteEpisode):
        require_complete(info)
    done = run_episode(env, FirstAllowed(), options={"instance": zipf_instance_small})
    assert require_complete(done) is done


def test_pipeline_truncation_is_not_scored_on_the_dp_completion() -> None:
    env = gym.make("pipesched/HeteroPipeline-v0", max_steps_factor=1).unwrapped
    info = run_episode(env, GiveUpAfter(1), seed=3)
    # the env completed the plan by its DP and simulated it; that figure is not the agent's
    assert math.isfinite(info["iteration_s"]) and info["complete"] is False
    assert incomplete_reason(info) is not None
    assert run_episode(env, FirstAllowed(), seed=3)["complete"] is True


def spark_jobs() -> list[Job]:
    return [Job(f"j{k}", 0.0, [Stage(0, (), 4, compute_s=2.0),
                                Stage(1, (0,), 2, compute_s=1.0)]) for k in range(3)]


def test_spark_truncation_is_incomplete() -> None:
    env = SparkDagShopEnv(observation_mode="graph", num_executors=2, max_steps=2)
    info = run_episode(env, make_heuristic("fifo"), options={"instance": spark_jobs()})
    assert info["complete"] is False and info["jobs_done"] < 3
    assert "of 3 jobs done" in incomplete_reason(info)
    env = SparkDagShopEnv(observation_mode="graph", num_executors=2)
    assert run_episode(env, make_heuristic("fifo"),
                       options={"instance": spark_jobs()})["complete"] is True


def test_a_comparison_whose_heuristics_all_fail_has_no_reference() -> None:
    heuristics, agents = _spark_contenders("pipesched/SparkDagShop-v0", {"num_executors": 5, "num_jobs": 3,
                                            "max_steps": 2}, {})
    with pytest.raises(IncompleteEpisode, match="no heuristic completed"):
        run_outcomes(heuristics, agents, [0])
    heuristics, agents = _spark_contenders("pipesched/SparkDagShop-v0",
                                           {"num_executors": 5, "num_jobs": 3}, {})
    (outcome,) = run_outcomes(heuristics, agents, [0])
    assert outcome.reference == min(outcome.objective.values()) and not outcome.failures


def test_summary_counts_failures_and_never_averages_them_away() -> None:
    """Hand-computed: reference 2 on both instances; ``a`` finishes one at 3 s and fails the
    other; ``b`` takes 2 s and 4 s."""
    first = Outcome(2.0, {"a": 3.0, "b": 2.0}, {"a": 0.1, "b": 0.1})
    second = Outcome(2.0, {"a": math.inf, "b": 4.0}, {"a": 0.1, "b": 0.1},
                     failures={"a": "truncated"})
    rows = {row["scheduler"]: row for row in summarise([first, second])}
    assert (rows["b"]["mean_ratio"], rows["b"]["max_ratio"], rows["b"]["failed"]) == (1.5, 2.0, 0)
    assert rows["a"]["failed"] == 1 and rows["a"]["failures"] == ["truncated"]
    assert rows["a"]["mean_ratio"] == math.inf and rows["a"]["max_ratio"] == math.inf


@pytest.fixture
def zipf_instance_small():
    from envs.param_server import ZipfTopicGenerator

    return ZipfTopicGenerator(num_blocks=6, num_shards=8, num_machines=3)(
        np.random.default_rng(0))
