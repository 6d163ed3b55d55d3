import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from agents.evaluate import run_episode
from envs.offload import simulate
from heuristics.offload import HEURISTICS


class PlanFollower:
    """Replays a planner's plan through the env (a Scheduler)."""

    def __init__(self, env, planner):
        self.env, self.planner = env, planner

    def reset(self):
        self.steps = None

    def act(self, observation, action_mask):
        if self.steps is None:
            self.steps = iter(self.planner(self.env.instance))
        job, cut = next(self.steps)
        return self.env.action_for(job, cut)


def test_env_makespan_equals_simulator_for_a_replayed_plan():
    env = gym.make("pipesched/DnnOffload-v0").unwrapped
    for seed in range(3):
        info = run_episode(env, PlanFollower(env, HEURISTICS["joint"]), seed=seed)
        assert info["makespan_s"] == pytest.approx(simulate(env.instance, info["plan"]).makespan_s)
        # episode return telescopes to -makespan / lower bound
        assert info["makespan_s"] >= info["lower_bound_s"]


def test_returns_sum_to_scaled_makespan():
    env = gym.make("pipesched/DnnOffload-v0").unwrapped
    _, info = env.reset(seed=4)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(int(np.flatnonzero(info["action_mask"])[-1]))
        total += reward
        done = terminated or truncated
    assert total == pytest.approx(-info["makespan_s"] / info["lower_bound_s"])


def test_fixed_instance_replay_and_too_many_jobs():
    from envs.offload import ProfileGenerator

    instance = ProfileGenerator(min_jobs=8, max_jobs=8)(np.random.default_rng(0))
    env = gym.make("pipesched/DnnOffload-v0", max_jobs=8).unwrapped
    env.reset(options={"instance": instance})
    assert env.instance is instance
    small = gym.make("pipesched/DnnOffload-v0", max_jobs=4).unwrapped
    with pytest.raises(ValueError, match="8 jobs but the env was built with max_jobs=4"):
        small.reset(options={"instance": instance})


def test_truncation_after_too_many_invalid_actions_still_gives_a_full_plan():
    env = gym.make("pipesched/DnnOffload-v0", max_invalid_actions=3).unwrapped
    _, info = env.reset(seed=0)
    invalid = int(np.flatnonzero(~info["action_mask"])[0])
    for _ in range(3):
        _, _, terminated, truncated, info = env.step(invalid)
    assert truncated and not terminated and info["invalid_actions"] == 3
    assert len(info["plan"]) == env.instance.num_jobs
