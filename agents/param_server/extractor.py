"""Machine-set encoder for ``pipesched/ParamServer-v0``.

Each machine row (its load, the what-if times of placing the current item there, the item's
affinity to it) is embedded together with the item features by a shared MLP; machines then
see the set through mean and max pooling over valid machines. A shared scorer turns every
machine's embedding plus the pooled context into one action logit (see
:class:`agents.algos.policies.ScorePolicy`), so the same weights serve any number of machines up to
``max_machines``. The value head reads the pooled context and the item features.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class MachineSetExtractor(BaseFeaturesExtractor):
    def __init__(self, observation_space: gym.spaces.Dict, embed_dim: int = 64) -> None:
        max_machines, machine_dim = observation_space["machine_features"].shape
        item_dim = observation_space["item_features"].shape[-1]
        self.n_scores = max_machines
        super().__init__(observation_space, max_machines + 2 * embed_dim + item_dim)
        self.encoder = nn.Sequential(nn.Linear(machine_dim + item_dim, embed_dim), nn.ReLU(),
                                     nn.Linear(embed_dim, embed_dim), nn.ReLU())
        self.scorer = nn.Sequential(nn.Linear(3 * embed_dim, embed_dim), nn.ReLU(),
                                    nn.Linear(embed_dim, 1))

    def reset_score_head(self) -> None:
        nn.init.orthogonal_(self.scorer[-1].weight, gain=0.01)
        nn.init.zeros_(self.scorer[-1].bias)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        machines = observations["machine_features"]
        items = observations["item_features"]
        valid = machines[..., 0:1] > 0.5
        batch, max_machines, _ = machines.shape
        hidden = self.encoder(torch.cat([machines, items[:, None, :].expand(
            batch, max_machines, -1)], dim=-1))
        weights = valid.float()
        mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        peak = hidden.masked_fill(~valid, 0.0).amax(dim=1)
        context = torch.cat([mean, peak], dim=-1)
        scores = self.scorer(torch.cat([hidden, context[:, None, :].expand(
            batch, max_machines, -1)], dim=-1)).squeeze(-1)
        return torch.cat([scores, context, items], dim=-1)
