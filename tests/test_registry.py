"""Every registered pipesched env, checked the way Minigrid checks its registry."""

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs

ENV_IDS = sorted(envs.ENV_IDS)


def _rollout(env: gym.Env, seed: int, steps: int = 200) -> list:
    observation, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    trace = []
    for _ in range(steps):
        action = int(rng.choice(np.flatnonzero(info["action_mask"])))
        observation, reward, terminated, truncated, info = env.step(action)
        trace.append((action, reward, {k: v.copy() for k, v in observation.items()}))
        if terminated or truncated:
            break
    return trace


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_with_ansi_render_mode(env_id):
    env = gym.make(env_id, render_mode="ansi")
    assert env.unwrapped.render_mode == "ansi" in env.metadata["render_modes"]
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_the_registered_entry_point_takes_the_tables_config(env_id):
    problem = envs.problem_for(env_id)
    env = gym.make(env_id).unwrapped
    assert type(env) is problem.load("env_class")
    assert type(env.config) is problem.load("config")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeded_determinism(env_id):
    first, second = (_rollout(gym.make(env_id).unwrapped, seed=7) for _ in range(2))
    assert len(first) == len(second)
    for (a1, r1, o1), (a2, r2, o2) in zip(first, second, strict=True):
        assert a1 == a2 and r1 == r2
        for key in o1:
            np.testing.assert_array_equal(o1[key], o2[key])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_mask_never_all_false_and_final_info(env_id):
    env = gym.make(env_id).unwrapped
    observation, info = env.reset(seed=3)
    rng = np.random.default_rng(3)
    done = False
    while not done:
        mask = np.asarray(info["action_mask"], dtype=bool)
        assert mask.any() and np.array_equal(mask, env.action_masks())
        observation, _, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(mask))))
        done = terminated or truncated
    assert info["invalid_actions"] == 0
    assert info[envs.problem_for(env_id).objective] > 0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_invalid_action_is_a_counted_no_op(env_id):
    env = gym.make(env_id).unwrapped
    _, info = env.reset(seed=1)
    invalid = np.flatnonzero(~np.asarray(info["action_mask"], dtype=bool))
    if len(invalid) == 0:
        pytest.skip("every action is valid in the first state of this instance")
    _, reward, _, _, info = env.step(int(invalid[0]))
    assert info["invalid_actions"] == 1 and reward <= 0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pickling_preserves_the_episode(env_id):
    env = gym.make(env_id).unwrapped
    _, info = env.reset(seed=11)
    action = int(np.flatnonzero(info["action_mask"])[0])
    env.step(action)
    clone = pickle.loads(pickle.dumps(env))
    _, info = env.reset(seed=12)
    _, clone_info = clone.reset(seed=12)
    next_action = int(np.flatnonzero(info["action_mask"])[0])
    obs_a, reward_a, *_ = env.step(next_action)
    obs_b, reward_b, *_ = clone.step(next_action)
    assert reward_a == reward_b
    for key in obs_a:
        np.testing.assert_array_equal(obs_a[key], obs_b[key])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_ansi_render(env_id):
    env = gym.make(env_id, render_mode="ansi")
    _, info = env.reset(seed=0)
    env.step(int(np.flatnonzero(info["action_mask"])[0]))
    text = env.render()
    assert isinstance(text, str) and text.strip()
