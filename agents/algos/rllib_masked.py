"""pipesched envs in Ray RLlib with action masking (the optional ``rllib`` extra).

    pip install -e '.[rllib]'
    python -m agents.algos.rllib_masked --env pipesched/ParamServer-v0 --iterations 3 [--workers 0]

RLlib's action-masking PPO module (``ActionMaskingTorchRLModule``, new API stack) expects a
``Dict`` observation ``{"observations": ..., "action_mask": ...}``; pipesched envs give the
mask in ``info["action_mask"]`` (SB3-contrib's convention) and a ``Dict`` of arrays as the
observation. :class:`MaskedFlatEnv` bridges the two: the observation flattened to one float32
vector, the mask as a 0/1 float32 vector, actions and rewards untouched. The padded
observation modes work (DnnOffload, ParamServer, HeteroPipeline; SparkDagShop with
``observation_mode="padded"``); RLlib's default MLP sees the flat vector, not the set/graph
structure the project's own extractors use.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from envs import ENV_IDS, PROBLEMS

RLLIB_MISSING = "Ray RLlib is not installed (pip install -e '.[rllib]')"


class MaskedFlatEnv(gym.Env):
    """A pipesched env as RLlib's action-masking module wants it (module docstring).
    ``config``: ``{"env_id": ..., "env_kwargs": {...}}``."""

    def __init__(self, config: dict[str, Any]) -> None:
        import envs  # noqa: F401  (registers the ids)

        self.inner = gym.make(config["env_id"], **config.get("env_kwargs", {}))
        self.action_space = self.inner.action_space
        flat = gym.spaces.flatten_space(self.inner.observation_space)
        self.observation_space = gym.spaces.Dict({
            "observations": gym.spaces.Box(-np.inf, np.inf, flat.shape, np.float32),
            "action_mask": gym.spaces.Box(0.0, 1.0, (int(self.action_space.n),), np.float32),
        })

    def _observe(self, observation: Any, info: dict) -> dict[str, np.ndarray]:
        flat = gym.spaces.flatten(self.inner.observation_space, observation)
        return {"observations": flat.astype(np.float32),
                "action_mask": np.asarray(info["action_mask"], dtype=np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict, dict]:
        observation, info = self.inner.reset(seed=seed, options=options)
        return self._observe(observation, info), info

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.inner.step(int(action))
        return self._observe(observation, info), float(reward), terminated, truncated, info


def ppo_config(env_id: str, env_kwargs: dict | None = None, workers: int = 0,
               train_batch_size: int = 512, seed: int = 0) -> Any:
    """An RLlib ``PPOConfig`` on :class:`MaskedFlatEnv` with the action-masking module."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.examples.rl_modules.classes.action_masking_rlm import (
        ActionMaskingTorchRLModule,
    )

    return (PPOConfig()
            .environment(MaskedFlatEnv, env_config={"env_id": env_id,
                                                    "env_kwargs": env_kwargs or {}})
            .env_runners(num_env_runners=workers)
            .training(train_batch_size=train_batch_size, minibatch_size=128, num_epochs=2,
                      lr=3e-4)
            .rl_module(rl_module_spec=RLModuleSpec(
                module_class=ActionMaskingTorchRLModule,
                model_config={"fcnet_hiddens": [64, 64]}))
            .debugging(seed=seed))


def train(env_id: str, iterations: int, env_kwargs: dict | None = None, workers: int = 0,
          train_batch_size: int = 512, seed: int = 0) -> list[dict[str, float]]:
    """``iterations`` PPO iterations in a local Ray instance; per iteration the mean episode
    return and the env steps sampled so far."""
    import ray

    ray.init(num_cpus=max(1, workers + 1), include_dashboard=False, log_to_driver=False,
             configure_logging=False, ignore_reinit_error=True)
    try:
        algorithm = ppo_config(env_id, env_kwargs, workers, train_batch_size, seed).build_algo()
        history = []
        for _ in range(iterations):
            result = algorithm.train()
            runners = result.get("env_runners", {})
            history.append({
                "episode_return_mean": float(runners.get("episode_return_mean", np.nan)),
                "env_steps": float(runners.get("num_env_steps_sampled_lifetime", np.nan))})
        algorithm.stop()
        return history
    finally:
        ray.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.algos.rllib_masked",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=PROBLEMS["param_server"].env_id, choices=sorted(ENV_IDS))
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="RLlib env runners (0: driver)")
    parser.add_argument("--train-batch-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        parser.exit(2, f"{parser.prog}: error: {RLLIB_MISSING}\n")
    if args.iterations < 1 or args.workers < 0 or args.train_batch_size < 1:
        parser.error("--iterations and --train-batch-size must be >= 1, --workers >= 0")
    for number, row in enumerate(train(args.env, args.iterations, None, args.workers,
                                       args.train_batch_size, args.seed), start=1):
        print(f"iteration {number}: mean episode return {row['episode_return_mean']:.3f} "
              f"after {row['env_steps']:.0f} env steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
