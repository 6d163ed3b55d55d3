"""Train MaskablePPO on any pipesched env: config, vectorised envs, callbacks, save."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
from rich.console import Console
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback, ProgressBarCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import envs  # noqa: F401  (registers the ids)
from agents.config import TrainConfig, load_config


@dataclass
class TrainResult:
    model_path: Path
    config: TrainConfig
    timesteps: int


def make_env(env_id: str, env_kwargs: dict | None = None) -> gym.Env:
    import envs  # noqa: F401,F811  (subprocess workers import this module afresh)

    return gym.make(env_id, **(env_kwargs or {}))


def train(
    env_id: str,
    timesteps: int | None = None,
    seed: int = 0,
    n_envs: int = 1,
    config_path: str | Path | None = None,
    out_dir: str | Path = "runs",
    progress_bar: bool = True,
    console: Console | None = None,
    pretrain_overrides: dict | None = None,
    device: str = "cpu",
) -> TrainResult:
    """Train MaskablePPO on ``env_id``; writes checkpoints, TensorBoard logs and ``model.zip``."""
    console = console or Console()
    config = load_config(env_id, config_path)
    timesteps = timesteps if timesteps is not None else config.demo_timesteps
    run_dir = Path(out_dir) / env_id.replace("/", "_") / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)

    vec_cls = SubprocVecEnv if n_envs > 1 else DummyVecEnv
    vec_env = make_vec_env(
        make_env, n_envs=n_envs, seed=seed, vec_env_cls=vec_cls,
        env_kwargs={"env_id": env_id, "env_kwargs": config.env_kwargs},
    )
    model = MaskablePPO(
        config.resolved_policy(), vec_env, seed=seed, verbose=0, device=device,
        tensorboard_log=str(run_dir / "tb"),
        policy_kwargs=config.resolved_policy_kwargs(), **config.ppo,
    )
    if config.pretrain:
        from agents.imitation import pretrain

        settings = {**config.pretrain, **(pretrain_overrides or {})}
        pretrain(model, env_id, config.env_kwargs, settings, seed, console)
        model.save(run_dir / "model_pretrained.zip")
    callbacks = [CheckpointCallback(max(timesteps // (4 * n_envs), 1), str(run_dir / "checkpoints"),
                                    name_prefix="model")]
    if progress_bar:
        callbacks.append(ProgressBarCallback())
    console.print(f"[bold]training[/] MaskablePPO on {env_id}: {timesteps} steps, "
                  f"{n_envs} env(s), seed {seed} -> {run_dir}")
    model.learn(total_timesteps=timesteps, callback=CallbackList(callbacks))
    model_path = run_dir / "model.zip"
    model.save(model_path)
    vec_env.close()
    return TrainResult(model_path=model_path, config=config, timesteps=timesteps)
