"""Decima-class graph neural network for ``pipesched/SparkDagShop-v0``.

``SparkGnnExtractor`` embeds every stage, passes messages from children to parents along the
padded stage DAG (``num_rounds`` rounds, so a stage summarises its descendants), summarises
each job (sum of its stage embeddings + job features) and the whole cluster (sum of job
summaries + cluster features), then scores every (stage, parallelism level) with one shared
network of [stage, job, global] embeddings, plus a wait score from the global summary. Its
output is ``[action scores (num_actions), global summary (embed_dim)]``.

``SparkGnnPolicy`` is a MaskablePPO policy that uses those scores directly as the action
logits (weight sharing across stages, as in Decima; no dense layer over all actions) and a
linear value head on the global summary.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.LeakyReLU(), nn.Linear(hidden, outputs))


class SparkGnnExtractor(BaseFeaturesExtractor):
    def __init__(self, observation_space: spaces.Dict, embed_dim: int = 32, num_rounds: int = 4,
                 num_levels: int = 4) -> None:
        stage_shape = observation_space["stage_features"].shape
        self.max_jobs, self.max_stages, stage_dim = stage_shape
        self.num_levels = num_levels
        self.num_actions = self.max_jobs * self.max_stages * num_levels + 1
        super().__init__(observation_space, features_dim=self.num_actions + embed_dim)
        job_dim = observation_space["job_features"].shape[1]
        cluster_dim = observation_space["cluster_features"].shape[0]
        self.embed_dim = embed_dim
        self.num_rounds = num_rounds
        self.node_in = _mlp(stage_dim, embed_dim, embed_dim)
        self.message = _mlp(embed_dim, embed_dim, embed_dim)
        self.update = _mlp(2 * embed_dim, embed_dim, embed_dim)
        self.job_net = _mlp(embed_dim + job_dim, embed_dim, embed_dim)
        self.global_net = _mlp(embed_dim + cluster_dim, embed_dim, embed_dim)
        self.score = _mlp(3 * embed_dim, embed_dim, num_levels)
        self.wait = _mlp(embed_dim, embed_dim, 1)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        stage_mask = obs["stage_mask"].unsqueeze(-1)
        job_mask = obs["job_mask"].unsqueeze(-1)
        adjacency = obs["adjacency"]
        h0 = self.node_in(obs["stage_features"]) * stage_mask
        h = h0
        for _ in range(self.num_rounds):
            # parent p receives sum over its children c of message(h_c)
            incoming = torch.matmul(adjacency, self.message(h))
            h = (h0 + self.update(torch.cat([h, incoming], dim=-1))) * stage_mask
        job_embed = self.job_net(torch.cat([h.sum(dim=2), obs["job_features"]], dim=-1)) * job_mask
        global_embed = self.global_net(torch.cat([job_embed.sum(dim=1),
                                                  obs["cluster_features"]], dim=-1))
        batch = h.shape[0]
        per_node = torch.cat([
            h, job_embed.unsqueeze(2).expand(-1, -1, self.max_stages, -1),
            global_embed[:, None, None, :].expand(-1, self.max_jobs, self.max_stages, -1),
        ], dim=-1)
        scores = self.score(per_node).reshape(batch, -1)
        wait = self.wait(global_embed)
        return torch.cat([scores, wait, global_embed], dim=-1)


class _TakeLogits(nn.Module):
    def __init__(self, num_actions: int) -> None:
        super().__init__()
        self.num_actions = num_actions

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return latent[..., : self.num_actions]


class _ValueHead(nn.Module):
    def __init__(self, num_actions: int, embed_dim: int) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.linear = nn.Linear(embed_dim, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.linear(latent[..., self.num_actions:])


class SparkGnnPolicy(MaskableMultiInputActorCriticPolicy):
    """MaskablePPO policy whose logits are the GNN's per-(stage, level) scores."""

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Discrete,
                 lr_schedule: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", SparkGnnExtractor)
        extractor_kwargs = dict(kwargs.get("features_extractor_kwargs") or {})
        shape = observation_space["stage_features"].shape
        extractor_kwargs.setdefault("num_levels", (action_space.n - 1) // (shape[0] * shape[1]))
        kwargs["features_extractor_kwargs"] = extractor_kwargs
        kwargs["net_arch"] = {"pi": [], "vf": []}
        kwargs.setdefault("share_features_extractor", True)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        extractor = self.features_extractor
        self.action_net = _TakeLogits(extractor.num_actions)
        self.value_net = _ValueHead(extractor.num_actions, extractor.embed_dim)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1),
                                              **self.optimizer_kwargs)
