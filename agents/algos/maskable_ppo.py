"""Train MaskablePPO on any pipesched env: config, vectorised envs, callbacks, save."""

from __future__ import annotations

import multiprocessing
import signal
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
from rich.console import Console
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback, ProgressBarCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import envs  # noqa: F401  (registers the ids)
from agents.algos.imitation import Collect
from agents.config import TrainConfig, load_config_with_overrides


@dataclass
class TrainResult:
    model_path: Path
    config: TrainConfig
    timesteps: int
    interrupted: bool = False


def make_env(env_id: str, env_kwargs: dict | None = None) -> gym.Env:
    import envs  # noqa: F401,F811  (subprocess workers import this module afresh)

    if multiprocessing.current_process().name != "MainProcess":
        # Ctrl-C reaches the whole process group: the parent stops and saves; workers stay
        # quiet until it closes them
        signal.signal(signal.SIGINT, signal.SIG_IGN)
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
    warmup: bool = True,
    warmup_episodes: int | None = None,
    collect: Collect | None = None,
) -> TrainResult:
    """Train MaskablePPO on ``env_id``; writes checkpoints, TensorBoard logs and ``model.zip``.

    A config with a ``pretrain`` block first imitates its expert, scaled to ``timesteps``
    (:func:`agents.algos.imitation.scale_pretrain`); ``warmup=False`` skips that. Ctrl-C saves the
    current policy as ``model_interrupted.zip`` and returns with ``interrupted`` set.
    ``collect`` (a sweep runner) collects the warm-up's labels; None: in this process."""
    console = console or Console()
    config, overridden = load_config_with_overrides(env_id, config_path)
    if overridden:
        console.print(f"config {config_path} overrides {env_id}: {', '.join(overridden)} "
                      f"(the rest from agents/configs/)")
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
    progress = ProgressBarCallback() if progress_bar else None
    try:
        if config.pretrain and warmup:
            from agents.algos.imitation import describe_pretrain, pretrain, scale_pretrain

            settings = {**scale_pretrain(config.pretrain, timesteps, warmup_episodes),
                        **(pretrain_overrides or {})}
            console.print(f"{describe_pretrain(settings)} (--warmup-episodes N or --no-warmup "
                          f"to change)")
            pretrain(model, env_id, config.env_kwargs, settings, seed, console, collect)
            model.save(run_dir / "model_pretrained.zip")
        callbacks = [CheckpointCallback(max(timesteps // (4 * n_envs), 1),
                                        str(run_dir / "checkpoints"), name_prefix="model")]
        if progress is not None:
            callbacks.append(progress)
        console.print(f"[bold]training[/] MaskablePPO on {env_id}: {timesteps} steps, "
                      f"{n_envs} env(s), seed {seed} -> {run_dir}")
        model.learn(total_timesteps=timesteps, callback=CallbackList(callbacks))
    except KeyboardInterrupt:
        if progress is not None and getattr(progress, "pbar", None) is not None:
            progress.pbar.close()
        model_path = run_dir / "model_interrupted.zip"
        model.save(model_path)
        vec_env.close()
        return TrainResult(model_path, config, model.num_timesteps, interrupted=True)
    model_path = run_dir / "model.zip"
    model.save(model_path)
    vec_env.close()
    return TrainResult(model_path=model_path, config=config, timesteps=timesteps)
