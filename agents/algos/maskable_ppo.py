"""``algo: maskable_ppo``: MaskablePPO on any pipesched env (config, vectorised envs, the
imitation warm-up, callbacks), saved as ``model.zip`` with its record ``model.json`` and the
mean episode reward per rollout in ``model.png``."""

from __future__ import annotations

import multiprocessing
import signal

import gymnasium as gym
import numpy as np
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    ProgressBarCallback,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import envs  # noqa: F401  (registers the ids)
from agents.algos.record import Panel, TrainResult, TrainRun, base_record, draw_curve, seed_all, write_json


class RewardCurve(BaseCallback):
    """The mean reward and length of the last episodes (SB3's window) after every rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[dict[str, float]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        episodes = self.model.ep_info_buffer
        if episodes:
            self.points.append({"timesteps": self.num_timesteps,
                                "mean_episode_reward": float(np.mean([e["r"] for e in episodes])),
                                "mean_episode_length": float(np.mean([e["l"] for e in episodes]))})


def make_env(env_id: str, env_kwargs: dict | None = None) -> gym.Env:
    import envs  # noqa: F401,F811  (subprocess workers import this module afresh)

    if multiprocessing.current_process().name != "MainProcess":
        # Ctrl-C reaches the whole process group: the parent stops and saves; workers stay
        # quiet until it closes them
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return gym.make(env_id, **(env_kwargs or {}))


def train(run: TrainRun, progress_bar: bool = True, pretrain_overrides: dict | None = None
          ) -> TrainResult:
    """Train MaskablePPO on ``run.env_id`` for the config's ``demo_timesteps``; writes
    checkpoints, TensorBoard logs, ``model.zip``, ``model.json`` and ``model.png``.

    A config with a ``pretrain`` block first imitates its expert, scaled to the timesteps
    (:func:`agents.algos.imitation.scale_pretrain`; ``maskable_ppo.warmup_episodes`` sets the
    cloned episodes, ``pretrain: null`` skips it). Ctrl-C saves the current policy with a
    record that says ``interrupted``. ``run.collect`` (a sweep runner) collects the warm-up's
    labels; None: in this process."""
    config, env_id, run_dir, seed = run.config, run.env_id, run.run_dir, run.seed
    timesteps = config.demo_timesteps
    n_envs = config.maskable_ppo.get("n_envs", 1)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_all(seed)

    vec_cls = SubprocVecEnv if n_envs > 1 else DummyVecEnv
    vec_env = make_vec_env(
        make_env, n_envs=n_envs, seed=seed, vec_env_cls=vec_cls,
        env_kwargs={"env_id": env_id, "env_kwargs": config.env_kwargs},
    )
    model = MaskablePPO(
        config.resolved_policy(), vec_env, seed=seed, verbose=0, device=run.device,
        tensorboard_log=str(run_dir / "tb"),
        policy_kwargs=config.resolved_policy_kwargs(), **config.ppo,
    )
    progress = ProgressBarCallback() if progress_bar else None
    curve = RewardCurve()
    interrupted = False
    try:
        if config.pretrain:
            from agents.algos.imitation import describe_pretrain, pretrain, scale_pretrain

            settings = {**scale_pretrain(config.pretrain, timesteps,
                                         config.maskable_ppo.get("warmup_episodes")),
                        **(pretrain_overrides or {})}
            run.say(f"{describe_pretrain(settings)} (--set maskable_ppo.warmup_episodes=N or "
                    f"--set pretrain=null to change)")
            pretrain(model, env_id, config.env_kwargs, settings, seed, run.console, run.collect)
            model.save(run_dir / "model_pretrained.zip")
        callbacks = [CheckpointCallback(max(timesteps // (4 * n_envs), 1),
                                        str(run_dir / "checkpoints"), name_prefix="model"),
                     curve]
        if progress is not None:
            callbacks.append(progress)
        run.say(f"[bold]training[/] MaskablePPO on {env_id}: {timesteps} steps, "
                f"{n_envs} env(s), seed {seed} -> {run_dir}")
        model.learn(total_timesteps=timesteps, callback=CallbackList(callbacks))
    except KeyboardInterrupt:
        if progress is not None and getattr(progress, "pbar", None) is not None:
            progress.pbar.close()
        interrupted = True
    model_path = run_dir / "model.zip"
    model.save(model_path)
    vec_env.close()
    done = model.num_timesteps if interrupted else timesteps
    write_json(run_dir / "model.json", {**base_record(run, interrupted), "timesteps": done,
                                        "env_kwargs": config.env_kwargs,
                                        "learning_curve": curve.points,
                                        "learning_curve_png": "model.png"})
    draw_curve(curve.points, "timesteps", "PPO timesteps", [
        Panel({"mean_episode_reward": "reward"}, "mean episode reward", "training episodes")],
        run_dir / "model.png")
    return TrainResult(model_path, done, interrupted)
