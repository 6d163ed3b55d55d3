"""Train the shipped Spark DAG-shop agent: behaviour-cloning warm start, then MaskablePPO.

``python -m agents.train_spark_dag --minutes 20 --out models/spark_dag_agent``

1. Roll out a teacher heuristic (``--teacher``, default ``fair``) on generated online workloads
   (loads drawn from 0.5..0.95) and fit the GNN policy's masked logits to its actions
   (cross-entropy); this starts PPO from a sensible scheduler instead of from random caps.
2. MaskablePPO with :class:`agents.extractors.spark_gnn.SparkGnnPolicy` for the remaining
   wall-clock budget; the policy is evaluated on validation workloads every chunk and the best
   one (by mean JCT) is kept, so the shipped model is never worse on validation than the
   warm start.
3. Writes ``<out>.zip`` (MaskablePPO) and ``<out>.json`` (env kwargs incl. observation limits,
   training record).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.config import load_config
from agents.evaluate import run_episode
from agents.scheduler import SB3Scheduler
from envs.spark_dag.env import SparkDagShopEnv
from heuristics.spark_dag import make_heuristic, padded_action

ENV_ID = "pipesched/SparkDagShop-v0"
VALIDATION_SEEDS = tuple(range(10_000, 10_004))


def collect_teacher(env: SparkDagShopEnv, teacher: str, episodes: int, seed: int
                    ) -> list[tuple[dict[str, np.ndarray], np.ndarray, int]]:
    """The teacher decides on the whole graph; its decision is mapped onto the padded action
    space (a stage outside the padded window becomes a wait, or the first valid action)."""
    scheduler = make_heuristic(teacher, env.limits)
    samples = []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        while True:
            mask = info["action_mask"]
            state = env.state
            action = padded_action(scheduler.act(state, state.stage_schedulable), state,
                                   env.limits)
            if action is None or not mask[action]:
                action = env.limits.wait_action if mask[-1] else int(np.flatnonzero(mask)[0])
            samples.append((obs, mask, action))
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
    return samples


def behaviour_clone(model: MaskablePPO, samples: list, epochs: int, batch_size: int = 128) -> float:
    policy = model.policy
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    keys = samples[0][0].keys()
    loss_value = float("nan")
    for _ in range(epochs):
        order = np.random.default_rng(0).permutation(len(samples))
        for start in range(0, len(order), batch_size):
            batch = [samples[i] for i in order[start:start + batch_size]]
            obs = {k: torch.as_tensor(np.stack([b[0][k] for b in batch])) for k in keys}
            masks = torch.as_tensor(np.stack([b[1] for b in batch]))
            actions = torch.as_tensor([b[2] for b in batch])
            logits = policy.action_net(policy.extract_features(obs, policy.features_extractor))
            logits = logits.masked_fill(~masks, -1e8)
            loss = torch.nn.functional.cross_entropy(logits, actions)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_value = float(loss.detach())
    return loss_value


def validate(model: MaskablePPO, env_kwargs: dict[str, Any]) -> float:
    env = SparkDagShopEnv(**env_kwargs)
    scheduler = SB3Scheduler(model, deterministic=True)
    return float(np.mean([run_episode(env, scheduler, seed=s)["mean_jct_s"]
                          for s in VALIDATION_SEEDS]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agents.train_spark_dag")
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget")
    parser.add_argument("--teacher", default="fair")
    parser.add_argument("--bc-episodes", type=int, default=12)
    parser.add_argument("--bc-epochs", type=int, default=6)
    parser.add_argument("--chunk-steps", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="models/spark_dag_agent")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    started = time.monotonic()
    config = load_config(ENV_ID)
    env_kwargs = dict(config.env_kwargs)
    torch.manual_seed(args.seed)
    vec_env = DummyVecEnv([lambda i=i: SparkDagShopEnv(**env_kwargs) for i in range(2)])
    vec_env.seed(args.seed)
    policy_kwargs = config.resolved_policy_kwargs()
    model = MaskablePPO(config.resolved_policy(), vec_env, seed=args.seed, verbose=0, device="cpu",
                        policy_kwargs=policy_kwargs, **config.ppo)
    record: dict[str, Any] = {"teacher": args.teacher, "env_kwargs": env_kwargs,
                              "ppo": config.ppo, "policy_kwargs": policy_kwargs}
    samples = collect_teacher(SparkDagShopEnv(**env_kwargs), args.teacher, args.bc_episodes,
                              seed=1_000 + args.seed)
    record["bc_samples"] = len(samples)
    record["bc_loss"] = behaviour_clone(model, samples, args.bc_epochs)
    best = validate(model, env_kwargs)
    record["history"] = [{"timesteps": 0, "validation_mean_jct_s": best,
                          "minutes": (time.monotonic() - started) / 60}]
    print(f"warm start: bc loss {record['bc_loss']:.3f}, validation mean JCT {best:.1f}s",
          flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out.with_suffix(".zip"))
    best_steps = 0
    while time.monotonic() - started < args.minutes * 60:
        model.learn(total_timesteps=args.chunk_steps, reset_num_timesteps=False)
        score = validate(model, env_kwargs)
        record["history"].append({"timesteps": int(model.num_timesteps),
                                  "validation_mean_jct_s": score,
                                  "minutes": (time.monotonic() - started) / 60})
        print(f"{model.num_timesteps} steps: validation mean JCT {score:.1f}s", flush=True)
        if score < best:
            best, best_steps = score, int(model.num_timesteps)
            model.save(out.with_suffix(".zip"))
    record.update({"best_validation_mean_jct_s": best, "best_timesteps": best_steps,
                   "total_timesteps": int(model.num_timesteps),
                   "train_minutes": (time.monotonic() - started) / 60,
                   "validation_seeds": list(VALIDATION_SEEDS),
                   "limits": SparkDagShopEnv(**env_kwargs).limits.to_json()})
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    print(f"saved {out.with_suffix('.zip')} (best validation mean JCT {best:.1f}s at "
          f"{best_steps} PPO steps)")


if __name__ == "__main__":
    main()
