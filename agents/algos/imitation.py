"""Imitation of a planner (behaviour cloning, then DAgger), used to warm-start MaskablePPO.

PPO from scratch on a few CPU minutes learns little on offloading (a 12k-step agent matched
``all_local``). So training first clones the ``joint`` planner's decisions on whole episodes,
then runs DAgger rounds (Ross et al., 2011): the policy plays, the planner labels every state
it reaches with the decision it would take from there (re-planning the pending jobs after the
resources' current state), and the policy is refitted on all labels so far. MaskablePPO then
continues from that policy. Reports name the expert, the rounds and the PPO steps.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console

import envs  # noqa: F401  (registers the ids)
from agents.config import import_object
from envs.offload import OffloadInstance

Arrays = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]
#: ``(task function name, payloads) -> rows`` of a sweep runner (the training command passes
#: :func:`spark_integration.runner.run_tasks` bound to an engine); None collects in-process
Collect = Callable[[str, list[dict]], list[dict]]
#: episodes per collection task
TASK_EPISODES = 10


class Transitions:
    """Observations, action masks and expert actions, collected one decision at a time."""

    def __init__(self) -> None:
        self.observations: dict[str, list[np.ndarray]] = {}
        self.masks: list[np.ndarray] = []
        self.actions: list[int] = []

    def add(self, observation: dict[str, np.ndarray], mask: np.ndarray, action: int) -> None:
        for key, value in observation.items():
            self.observations.setdefault(key, []).append(value)
        self.masks.append(mask)
        self.actions.append(action)

    def arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        stacked = {key: np.stack(values) for key, values in self.observations.items()}
        return stacked, np.stack(self.masks), np.array(self.actions)


def offload_demonstrations(env_id: str, env_kwargs: dict, expert: Callable, num_instances: int,
                           seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Observations, action masks and the expert's actions on ``num_instances`` episodes."""
    env = gym.make(env_id, **env_kwargs).unwrapped
    transitions = Transitions()
    for episode in range(num_instances):
        observation, info = env.reset(seed=seed + episode)
        for job, cut in expert(env.instance):
            action = env.action_for(job, cut)
            transitions.add(observation, info["action_mask"], action)
            observation, _, terminated, truncated, info = env.step(action)
        assert terminated and not truncated
    env.close()
    return transitions.arrays()


def offload_expert_action(env: gym.Env, expert: Callable, time_limit_s: float = 0.3) -> int:
    """The action ``expert`` (a planner accepting ``start=``) takes in the env's current state."""
    instance = env.instance
    pending = [j for j in range(instance.num_jobs) if j not in env.timeline.job_done_s]
    rest = OffloadInstance(instance.bandwidth_mbps, instance.latency_s,
                           tuple(instance.jobs[j] for j in pending))
    first_job, cut = expert(rest, time_limit_s, start=env.timeline.clock).steps[0]
    return env.action_for(pending[first_job], cut)


def dagger_states(model, env_id: str, env_kwargs: dict, expert: Callable, num_instances: int,
                  seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """States the current policy visits, labelled with the expert's action in each."""
    env = gym.make(env_id, **env_kwargs).unwrapped
    transitions = Transitions()
    for episode in range(num_instances):
        observation, info = env.reset(seed=seed + episode)
        done = False
        while not done:
            transitions.add(observation, info["action_mask"], offload_expert_action(env, expert))
            action, _ = model.predict(observation, action_masks=info["action_mask"],
                                      deterministic=True)
            observation, _, terminated, truncated, info = env.step(int(action))
            done = terminated or truncated
    env.close()
    return transitions.arrays()


def arrays_to_bytes(arrays: Arrays) -> bytes:
    """Transitions as ``.npz`` bytes (a runner row carries these, not live arrays)."""
    observations, masks, actions = arrays
    buffer = io.BytesIO()
    np.savez(buffer, masks=masks, actions=actions,
             **{f"observation/{key}": value for key, value in observations.items()})
    return buffer.getvalue()


def arrays_from_bytes(data: bytes) -> Arrays:
    with np.load(io.BytesIO(data)) as stored:
        observations = {key.split("/", 1)[1]: stored[key] for key in stored.files
                        if key.startswith("observation/")}
        return observations, stored["masks"], stored["actions"]


def concatenate(parts: list[Arrays]) -> Arrays:
    return ({key: np.concatenate([part[0][key] for part in parts]) for key in parts[0][0]},
            np.concatenate([part[1] for part in parts]), np.concatenate([part[2] for part in parts]))


def collect_labels(collect: Collect, task: str, common: dict, num_instances: int,
                   seed: int) -> Arrays:
    """The transitions of ``num_instances`` episodes (seeds ``seed..``) collected by the
    runner's ``task`` in batches of :data:`TASK_EPISODES`, concatenated in seed order, so
    they are those the in-process functions return for the same seeds."""
    payloads = [{**common, "seed": seed + start,
                 "instances": min(TASK_EPISODES, num_instances - start)}
                for start in range(0, num_instances, TASK_EPISODES)]
    return concatenate([arrays_from_bytes(row["transitions"])
                        for row in collect(task, payloads)])


def clone(model, observations: dict[str, np.ndarray], masks: np.ndarray, actions: np.ndarray,
          epochs: int, batch_size: int = 256, learning_rate: float = 1e-3,
          console: Console | None = None) -> float:
    """Maximise the policy's log-likelihood of the expert actions; returns the final loss."""
    policy = model.policy
    optimizer = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    tensors = {key: torch.as_tensor(value, device=policy.device)
               for key, value in observations.items()}
    mask_tensor = torch.as_tensor(masks)
    action_tensor = torch.as_tensor(actions, device=policy.device)
    generator = torch.Generator().manual_seed(0)
    loss_value = float("nan")
    policy.set_training_mode(True)
    for epoch in range(epochs):
        permutation = torch.randperm(len(actions), generator=generator)
        losses = []
        for start in range(0, len(actions), batch_size):
            index = permutation[start:start + batch_size]
            batch = {key: value[index.to(policy.device)] for key, value in tensors.items()}
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


def scale_pretrain(settings: dict, timesteps: int, episodes: int | None = None) -> dict:
    """The ``pretrain`` block for a run of ``timesteps`` PPO steps.

    Below the block's ``recipe_timesteps`` the cloned episodes, epochs, DAgger rounds and
    DAgger episodes shrink in the same proportion (at least 20 episodes and 10 epochs, or the
    block's own figure if smaller; no DAgger below one round's share), so a short run warms up
    briefly. ``episodes`` replaces the number of cloned episodes (``maskable_ppo.warmup_episodes``)."""
    scaled = dict(settings)
    fraction = min(1.0, timesteps / settings.get("recipe_timesteps", timesteps))
    if fraction < 1.0:
        floors = {"instances": 20, "epochs": 10, "dagger_instances": 20, "dagger_epochs": 10}
        for key, floor in floors.items():
            if key in settings:
                scaled[key] = max(min(floor, settings[key]), math.ceil(settings[key] * fraction))
        scaled["dagger_rounds"] = math.floor(settings.get("dagger_rounds", 0) * fraction)
    if episodes is not None:
        scaled["instances"] = episodes
    return scaled


def describe_pretrain(settings: dict) -> str:
    rounds = settings.get("dagger_rounds", 0)
    dagger = (f", {rounds} DAgger round(s) of {settings.get('dagger_instances')} episodes"
              if rounds else ", no DAgger")
    return (f"warm-up: cloning {settings['expert']} on {settings['instances']} episodes, "
            f"{settings['epochs']} epochs{dagger}")


def pretrain(model, env_id: str, env_kwargs: dict, settings: dict, seed: int,
             console: Console | None = None, collect: Collect | None = None) -> float:
    """Run the ``pretrain`` block of a training config: ``{expert, instances, epochs}`` and
    optionally ``dagger_rounds``, ``dagger_instances``, ``dagger_epochs``, ``learning_rate``.
    With ``collect`` the demonstrations and DAgger labels are collected by that runner (the
    policy travels as its saved .zip bytes); the labels are those of the in-process path."""
    expert = import_object(settings["expert"])
    learning_rate = settings.get("learning_rate", 1e-3)
    common = {"env_id": env_id, "env_kwargs": env_kwargs, "expert": settings["expert"]}
    console and console.print(f"behaviour cloning {settings['expert']} on "
                              f"{settings['instances']} instances")
    if collect is None:
        data = offload_demonstrations(env_id, env_kwargs, expert, settings["instances"],
                                      seed=10_000 + seed)
    else:
        data = collect_labels(collect, "agents.sweep_tasks:offload_demonstrations",
                              common, settings["instances"], 10_000 + seed)
    loss = clone(model, *data, settings["epochs"], learning_rate=learning_rate, console=console)
    for round_index in range(settings.get("dagger_rounds", 0)):
        console and console.print(f"DAgger round {round_index + 1}: labelling the states the "
                                  f"policy visits on {settings['dagger_instances']} instances")
        round_seed = 20_000 + seed + 1000 * round_index
        if collect is None:
            visited = dagger_states(model, env_id, env_kwargs, expert,
                                    settings["dagger_instances"], seed=round_seed)
        else:
            policy = io.BytesIO()
            model.save(policy)
            visited = collect_labels(collect, "agents.sweep_tasks:dagger_states",
                                     {**common, "model": policy.getvalue()},
                                     settings["dagger_instances"], round_seed)
        data = concatenate([data, visited])
        loss = clone(model, *data, settings.get("dagger_epochs", settings["epochs"]),
                     learning_rate=learning_rate, console=console)
    return loss
