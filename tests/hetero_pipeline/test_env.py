import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401
from envs.hetero_pipeline.env import HeteroPipelineEnv
from envs.hetero_pipeline.generator import HeteroPipelineGenerator
from envs.hetero_pipeline.instance import InstanceError, PipelinePlan
from envs.hetero_pipeline.simulator import simulate
from heuristics.hetero_pipeline import cluster_dp


def _rollout(env, rng, seed=None, options=None, invalid_every=0):
    observation, info = env.reset(seed=seed, options=options)
    total, step = 0.0, 0
    while True:
        mask = info["action_mask"]
        assert mask.any() and np.array_equal(mask, env.action_masks())
        step += 1
        if invalid_every and step % invalid_every == 0 and (~mask).any():
            action = int(np.flatnonzero(~mask)[0])
        else:
            action = int(rng.choice(np.flatnonzero(mask)))
        observation, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(observation)
        total += reward
        if terminated or truncated:
            return total, info


def test_check_env_passes():
    check_env(gym.make("pipesched/HeteroPipeline-v0").unwrapped, skip_render_check=True)


def test_random_rollouts_are_memory_feasible_and_rewards_telescope():
    env = HeteroPipelineEnv()
    rng = np.random.default_rng(0)
    for episode in range(8):
        total, info = _rollout(env, rng, seed=episode, invalid_every=3)
        assert info["fits_memory"]
        plan = PipelinePlan.from_groups(
            [tuple(s["devices"]) for s in info["plan"]["stages"]],
            [0] + [s["stop"] for s in info["plan"]["stages"]])
        assert info["iteration_s"] == pytest.approx(simulate(env.instance, plan).iteration_s)
        assert info["closed_form_s"] <= info["iteration_s"] + 1e-9
        expected = ((info["reference_s"] - info["iteration_s"]) / info["reference_s"]
                    - 0.1 * info["invalid_actions"])
        assert total == pytest.approx(expected)


def test_invalid_action_is_a_counted_noop():
    env = HeteroPipelineEnv()
    _, info = env.reset(seed=3)
    invalid = int(np.flatnonzero(~info["action_mask"])[0])
    state_before = (list(env.groups), env.cursor)
    _, reward, terminated, truncated, info = env.step(invalid)
    assert (list(env.groups), env.cursor) == state_before
    assert info["invalid_actions"] == 1 and reward == pytest.approx(-0.1)
    assert not terminated and not truncated
    _, _, _, _, info = env.step(10_000)  # out of range too
    assert info["invalid_actions"] == 2


def test_seeded_reset_is_deterministic_and_instance_replays():
    env_a, env_b = HeteroPipelineEnv(), HeteroPipelineEnv()
    obs_a, _ = env_a.reset(seed=42)
    obs_b, _ = env_b.reset(seed=42)
    assert all(np.array_equal(obs_a[k], obs_b[k]) for k in obs_a)
    total_a, info_a = _rollout(env_a, np.random.default_rng(1), seed=5)
    total_b, info_b = _rollout(env_b, np.random.default_rng(1), seed=5)
    assert info_a["iteration_s"] == info_b["iteration_s"] and total_a == total_b
    instance = env_a.instance
    _, info_c = _rollout(env_b, np.random.default_rng(1), options={"instance": instance})
    assert info_c["iteration_s"] == info_a["iteration_s"]


def test_env_can_reach_the_cluster_dp_plan():
    # Replaying cluster_dp's grouping and cuts through the env's actions gives its time.
    env = HeteroPipelineEnv()
    instance = HeteroPipelineGenerator(speed_ratio=(4.0, 4.0))(np.random.default_rng(9))
    plan = cluster_dp(instance)
    _, info = env.reset(options={"instance": instance})
    stage_of = {d: s for s, stage in enumerate(plan.stages) for d in stage.devices}
    opened: list[int] = []  # plan stages opened so far, in pipeline order
    while info["phase"] == "assign":
        device = env.order[env.cursor]
        stage = stage_of.get(device)
        if stage is None:
            action = env.idle_action
        elif stage in opened:
            action = opened.index(stage)
        else:
            position = sum(1 for t in opened if t < stage)
            action = env.new_stage_action + position
            opened.insert(position, stage)
        assert info["action_mask"][action]
        _, _, terminated, _, info = env.step(action)
    assert opened == list(range(plan.num_stages))
    for stage in plan.stages[:-1]:
        assert info["action_mask"][stage.stop - 1]
        _, _, terminated, _, info = env.step(stage.stop - 1)
    assert terminated
    assert info["iteration_s"] == pytest.approx(simulate(instance, plan).iteration_s)


def test_reset_rejects_oversized_instance():
    env = HeteroPipelineEnv(max_devices=4)
    instance = HeteroPipelineGenerator(num_devices=(6, 6))(np.random.default_rng(0))
    with pytest.raises(InstanceError, match="max_devices=4"):
        env.reset(options={"instance": instance})


def test_ansi_render_shows_gantt():
    env = HeteroPipelineEnv(render_mode="ansi")
    _rollout(env, np.random.default_rng(2), seed=1)
    assert "iteration" in env.render()


def test_plan_scheduler_replays_a_planner_through_run_episode():
    from agents.evaluate import run_episode
    from heuristics.hetero_pipeline import PlanScheduler

    env = HeteroPipelineEnv()
    instance = HeteroPipelineGenerator(speed_ratio=(2.0, 2.0))(np.random.default_rng(4))
    info = run_episode(env, PlanScheduler(env, cluster_dp), options={"instance": instance})
    assert info["invalid_actions"] == 0
    assert info["iteration_s"] == pytest.approx(simulate(instance, cluster_dp(instance)).iteration_s)
