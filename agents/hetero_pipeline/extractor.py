"""Set encoder for ``pipesched/HeteroPipeline-v0`` observations.

Devices, layers and stages are padded sets: each gets a shared per-item MLP, then masked
mean and max pooling; the current device's embedding and the progress vector are appended.
This keeps the policy invariant to device order and sizes it independently of padding.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


def _mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim),
                         nn.ReLU())


def _pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1)
    mean = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    maxed = tokens.masked_fill(weights == 0, -1e4).max(1).values
    maxed = torch.where(weights.sum(1) > 0, maxed, torch.zeros_like(maxed))
    return torch.cat([mean, maxed], dim=-1)


class DeviceLayerSetExtractor(BaseFeaturesExtractor):
    """Per-item MLPs over devices, layers and stages with masked mean/max pooling."""

    def __init__(self, observation_space: gym.spaces.Dict, embed_dim: int = 64) -> None:
        spaces = observation_space.spaces
        max_devices = spaces["devices"].shape[0]
        device_dim = spaces["devices"].shape[1] + spaces["device_stage"].shape[1]
        layer_dim = spaces["layers"].shape[1] + 1
        stage_dim = spaces["stages"].shape[1]
        progress_dim = spaces["progress"].shape[0]
        super().__init__(observation_space, features_dim=7 * embed_dim + progress_dim)
        self.max_devices = max_devices
        self.device_net = _mlp(device_dim, embed_dim)
        self.layer_net = _mlp(layer_dim, embed_dim)
        self.stage_net = _mlp(stage_dim, embed_dim)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        devices = torch.cat([observations["devices"], observations["device_stage"]], dim=-1)
        device_tokens = self.device_net(devices)
        current = observations["devices"][..., 5:6]
        current_token = (device_tokens * current).sum(1)
        layers = torch.cat([observations["layers"], observations["layer_stage"].unsqueeze(-1)],
                           dim=-1)
        layer_tokens = self.layer_net(layers)
        stage_tokens = self.stage_net(observations["stages"])
        return torch.cat([
            _pool(device_tokens, observations["device_valid"]), current_token,
            _pool(layer_tokens, observations["layer_valid"]),
            _pool(stage_tokens, observations["stages"][..., 0]),
            observations["progress"]], dim=-1)


def imitation_pretrain(model, env, planner, episodes: int, epochs: int, seed: int = 0,
                       batch_size: int = 256, learning_rate: float = 1e-3) -> dict:
    """Behaviour cloning of ``planner`` into a MaskablePPO ``model`` before PPO fine-tuning.

    Plays ``episodes`` generator instances with :class:`heuristics.hetero_pipeline.PlanScheduler`
    (the demonstrator), then fits the policy's masked action distribution to the
    demonstrator's actions (cross-entropy) and the value head to the episode returns.
    """
    import numpy as np

    from heuristics.hetero_pipeline import expert_action

    observations, masks, actions, returns = [], [], [], []
    skipped = 0
    for episode in range(episodes):
        observation, info = env.reset(seed=seed + episode)
        plan = planner(env.unwrapped.instance)
        trajectory, total = [], 0.0
        while True:
            action = expert_action(env, plan)
            if not info["action_mask"][action]:
                skipped += 1
                trajectory = []
                break
            trajectory.append((observation, info["action_mask"].copy(), action))
            observation, reward, terminated, truncated, info = env.step(action)
            total += reward
            if terminated or truncated:
                break
        rewards_to_go = total  # gamma = 1 and only the total matters for the value target
        for obs, mask, action in trajectory:
            observations.append(obs)
            masks.append(mask)
            actions.append(action)
            returns.append(rewards_to_go)
    policy = model.policy
    optimizer = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    stacked = {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    mask_array, action_array = np.stack(masks), np.array(actions)
    return_array = np.array(returns, dtype=np.float32)
    rng = np.random.default_rng(seed)
    count = len(action_array)
    for _ in range(epochs):
        order = rng.permutation(count)
        for start in range(0, count, batch_size):
            index = order[start:start + batch_size]
            obs_tensor, _ = policy.obs_to_tensor({k: v[index] for k, v in stacked.items()})
            values, log_prob, _ = policy.evaluate_actions(
                obs_tensor, torch.as_tensor(action_array[index]),
                action_masks=torch.as_tensor(mask_array[index]))
            loss = -log_prob.mean() + 0.5 * torch.nn.functional.mse_loss(
                values.flatten(), torch.as_tensor(return_array[index]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        obs_tensor, _ = policy.obs_to_tensor(stacked)
        dist = policy.get_distribution(obs_tensor, action_masks=mask_array)
        accuracy = float((dist.get_actions(deterministic=True).numpy() == action_array).mean())
    return {"samples": count, "episodes_skipped": skipped, "train_accuracy": accuracy}


def evaluate_gap(model, env, planner, seeds) -> float:
    """Mean ``iteration_s(model) / iteration_s(planner) - 1`` over generator instances; an
    instance the model did not complete (the env's DP finished it) is a gap of ``inf``."""
    import numpy as np

    from agents.evaluate import incomplete_reason, run_episode
    from agents.scheduler import SB3Scheduler
    from envs.hetero_pipeline.simulator import iteration_time

    scheduler, gaps = SB3Scheduler(model), []
    for seed in seeds:
        env.reset(seed=int(seed))
        instance = env.unwrapped.instance
        info = run_episode(env, scheduler, options={"instance": instance})
        if incomplete_reason(info) is not None:
            gaps.append(np.inf)
            continue
        gaps.append(info["iteration_s"] / iteration_time(instance, planner(instance)) - 1)
    return float(np.mean(gaps))


def main(argv: list[str] | None = None) -> None:
    """Train the shipped agent: imitation of ``cluster_dp``, then MaskablePPO fine-tuning.

    ``python -m agents.hetero_pipeline.extractor --out models/hetero_pipeline_agent.zip``
    Keeps whichever of the imitation-only and the fine-tuned policy has the lower mean gap to
    ``cluster_dp`` on validation instances (seeds disjoint from training and the benchmark).
    """
    import argparse
    import time

    import gymnasium as gym
    from sb3_contrib import MaskablePPO

    import envs  # noqa: F401
    from agents.config import load_config
    from heuristics.hetero_pipeline import cluster_dp

    parser = argparse.ArgumentParser(prog="python -m agents.hetero_pipeline.extractor")
    parser.add_argument("--out", default="models/hetero_pipeline_agent.zip")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--ppo-steps", type=int, default=10_000)
    parser.add_argument("--validation", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = load_config("pipesched/HeteroPipeline-v0")
    env = gym.make("pipesched/HeteroPipeline-v0", **config.env_kwargs)
    ppo = dict(config.ppo)
    model = MaskablePPO("MultiInputPolicy", env, seed=args.seed, device="cpu",
                        policy_kwargs=config.resolved_policy_kwargs(), **ppo)
    start = time.time()
    stats = imitation_pretrain(model, env, cluster_dp, args.episodes, args.epochs,
                               seed=10_000 + args.seed)
    validation = range(20_000, 20_000 + args.validation)
    imitation_gap = evaluate_gap(model, env, cluster_dp, validation)
    print(f"imitation: {stats}, validation gap {imitation_gap:.4f} "
          f"({time.time() - start:.0f} s)", flush=True)
    model.save(args.out)
    if args.ppo_steps > 0:
        # fine-tune gently: a smaller step size and no entropy bonus keep the cloned policy
        model.learning_rate = 1e-4
        model.ent_coef = 0.0
        model.lr_schedule = lambda _: 1e-4
        model.learn(total_timesteps=args.ppo_steps)
        tuned_gap = evaluate_gap(model, env, cluster_dp, validation)
        print(f"fine-tuned ({args.ppo_steps} PPO steps): validation gap {tuned_gap:.4f} "
              f"({time.time() - start:.0f} s)", flush=True)
        if tuned_gap < imitation_gap:
            model.save(args.out)
            print("kept the fine-tuned policy", flush=True)
        else:
            print("kept the imitation policy", flush=True)


if __name__ == "__main__":
    main()
