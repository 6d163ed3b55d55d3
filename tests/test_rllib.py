"""A short Ray RLlib PPO run with action masking on a pipesched env (the optional ``rllib``
extra; skipped with its reason when Ray is not installed)."""

import importlib.util

import numpy as np
import pytest

from agents.algos.rllib_masked import RLLIB_MISSING, MaskedFlatEnv

needs_rllib = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason=RLLIB_MISSING)


def test_masked_env_carries_the_mask_in_the_observation() -> None:
    env = MaskedFlatEnv({"env_id": "pipesched/ParamServer-v0"})
    observation, info = env.reset(seed=0)
    assert env.observation_space.contains(observation)
    assert np.array_equal(observation["action_mask"], np.asarray(info["action_mask"], float))
    action = int(np.flatnonzero(observation["action_mask"])[0])
    observation, _, _, _, _ = env.step(action)
    assert env.observation_space.contains(observation)


@needs_rllib
def test_rllib_ppo_trains_with_action_masking() -> None:
    from agents.algos.rllib_masked import train

    history = train("pipesched/ParamServer-v0", iterations=2, train_batch_size=256)
    assert len(history) == 2 and history[-1]["env_steps"] >= 512
    assert np.isfinite(history[-1]["episode_return_mean"])
