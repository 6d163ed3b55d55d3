"""Behaviour cloning from a planner, used to warm-start MaskablePPO.

PPO from scratch on a few CPU minutes learns little on offloading (the demo agent of 12k steps
matched ``all_local``). Cloning the ``joint`` planner's decisions first, then continuing with
MaskablePPO, is the usual remedy (as in AlphaStar-style or GAIL-style pipelines); the reports
name the cloned expert and the PPO steps so the numbers are read correctly.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console

import envs  # noqa: F401  (registers the ids)
from agents.config import import_object


def offload_demonstrations(env_id: str, env_kwargs: dict, expert: Callable, num_instances: int,
                           seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Observations, action masks and the expert's actions on ``num_instances`` episodes."""
    env = gym.make(env_id, **env_kwargs).unwrapped
    observations: dict[str, list[np.ndarray]] = {}
    masks, actions = [], []
    for episode in range(num_instances):
        observation, info = env.reset(seed=seed + episode)
        for job, cut in expert(env.instance):
            action = env.action_for(job, cut)
            for key, value in observation.items():
                observations.setdefault(key, []).append(value)
            masks.append(info["action_mask"])
            actions.append(action)
            observation, _, terminated, truncated, info = env.step(action)
        assert terminated and not truncated
    env.close()
    stacked = {key: np.stack(values) for key, values in observations.items()}
    return stacked, np.stack(masks), np.array(actions)


def clone(model, observations: dict[str, np.ndarray], masks: np.ndarray, actions: np.ndarray,
          epochs: int, batch_size: int = 256, learning_rate: float = 1e-3,
          console: Console | None = None) -> float:
    """Maximise the policy's log-likelihood of the expert actions; returns the final loss."""
    policy = model.policy
    optimizer = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    tensors = {key: torch.as_tensor(value) for key, value in observations.items()}
    mask_tensor = torch.as_tensor(masks)
    action_tensor = torch.as_tensor(actions)
    generator = torch.Generator().manual_seed(0)
    loss_value = float("nan")
    policy.set_training_mode(True)
    for epoch in range(epochs):
        permutation = torch.randperm(len(actions), generator=generator)
        losses = []
        for start in range(0, len(actions), batch_size):
            index = permutation[start:start + batch_size]
            batch = {key: value[index] for key, value in tensors.items()}
            distribution = policy.get_distribution(batch, action_masks=mask_tensor[index].numpy())
            loss = -distribution.log_prob(action_tensor[index]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        loss_value = float(np.mean(losses))
        if console and (epoch % 10 == 0 or epoch == epochs - 1):
            console.print(f"  behaviour cloning epoch {epoch + 1}/{epochs}: nll {loss_value:.4f}")
    policy.set_training_mode(False)
    return loss_value


def pretrain(model, env_id: str, env_kwargs: dict, settings: dict, seed: int,
             console: Console | None = None) -> float:
    """Run the ``pretrain`` block of a training config: ``{expert, instances, epochs}``."""
    expert = import_object(settings["expert"])
    console and console.print(f"behaviour cloning {settings['expert']} on "
                              f"{settings['instances']} instances")
    observations, masks, actions = offload_demonstrations(
        env_id, env_kwargs, expert, settings["instances"], seed=10_000 + seed)
    return clone(model, observations, masks, actions, settings["epochs"],
                 learning_rate=settings.get("learning_rate", 1e-3), console=console)
