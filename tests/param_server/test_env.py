import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the ids)
from envs.param_server import MachineProfile, ParamServerEnv, ZipfTopicGenerator, evaluate
from envs.param_server.env import play_allocation
from heuristics.param_server import HEURISTICS

SMALL = ZipfTopicGenerator(num_blocks=12, num_shards=24, num_machines=3)


def test_check_env_on_registered_id():
    env = gym.make("pipesched/ParamServer-v0", generator_kwargs={"num_blocks": 10,
                                                                  "num_shards": 20})
    check_env(env.unwrapped, skip_render_check=True)


def test_same_seed_same_episode():
    def rollout(seed):
        env = ParamServerEnv(generator=SMALL)
        obs, info = env.reset(seed=seed)
        trace = [obs["machine_features"].copy()]
        while True:
            action = int(env.np_random.choice(np.flatnonzero(info["action_mask"])))
            obs, reward, terminated, _, info = env.step(action)
            trace.append(reward)
            if terminated:
                return trace, info
    first, info_a = rollout(7)
    second, info_b = rollout(7)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1:] == second[1:] and info_a["allocation"] == info_b["allocation"]
    assert rollout(8)[1]["allocation"] != info_a["allocation"]


@pytest.mark.parametrize("name", sorted(HEURISTICS))
def test_replaying_an_allocation_gives_the_simulator_result(name, zipf_instance):
    env = ParamServerEnv()
    allocation = HEURISTICS[name](zipf_instance)
    info = play_allocation(env, allocation, zipf_instance)
    result = evaluate(zipf_instance, allocation)
    assert info["iteration_s"] == pytest.approx(result.iteration_s, rel=1e-12)
    assert info["remote_bytes"] == result.remote_bytes and info["invalid_actions"] == 0


def test_rewards_sum_to_minus_normalised_iteration_time(zipf_instance):
    env = ParamServerEnv()
    obs, info = env.reset(seed=0, options={"instance": zipf_instance})
    total = 0.0
    while True:
        obs, reward, terminated, _, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
        total += reward
        if terminated:
            break
    assert total == pytest.approx(-info["iteration_s"] / zipf_instance.time_scale_s)


def test_invalid_action_is_a_counted_penalised_noop(zipf_instance):
    env = ParamServerEnv()
    env.reset(options={"instance": zipf_instance})
    item = env.current_item
    obs, reward, terminated, truncated, info = env.step(15)  # machine 15 does not exist (M=4)
    assert info["invalid_actions"] == 1 and reward < 0 and not terminated and not truncated
    assert env.current_item == item


def test_tight_memory_masks_never_empty_and_capacity_never_exceeded():
    generator = ZipfTopicGenerator(num_blocks=16, num_shards=40, num_machines=4,
                                   machines=MachineProfile(memory_slack=1.0))
    env = ParamServerEnv(generator=generator)
    for seed in range(4):
        obs, info = env.reset(seed=seed)
        while True:
            mask = info["action_mask"]
            assert mask.any() and np.array_equal(mask, env.action_masks())
            # greedy on the emptiest-looking machine piles items up to test the mask
            action = int(np.flatnonzero(mask)[-1])
            obs, _, terminated, _, info = env.step(action)
            assert np.all(env.state.memory_used <= env.instance.memory_bytes)
            if terminated:
                break
        assert info["complete"] and info["invalid_actions"] == 0


def test_ansi_render_and_instance_too_large():
    env = ParamServerEnv(generator=SMALL, render_mode="ansi", max_machines=4)
    env.reset(seed=0)
    text = env.render()
    assert text.startswith("iteration") and text.count("|") == 2 * 3
    with pytest.raises(ValueError, match="max_machines=2"):
        ParamServerEnv(generator=SMALL, max_machines=2).reset(seed=0)
