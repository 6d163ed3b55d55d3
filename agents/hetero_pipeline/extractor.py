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
