"""Set encoder for ``pipesched/DnnOffload-v0``: jobs and their candidate cuts as sets.

Each cut is embedded by a shared MLP; a job's embedding pools its cuts (max) with its own
features and the global state; jobs attend to each other (masked multi-head attention), so
the same weights serve any number of jobs up to ``max_jobs``. Every (job, cut) gets a score
from a shared MLP over its cut, job context and the global state: those scores are the action
logits (see :class:`agents.algos.policies.ScorePolicy`). The value head reads pooled job contexts.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


def _mlp(in_dim: int, out_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim), nn.ReLU())


class JobCutSetExtractor(BaseFeaturesExtractor):
    def __init__(self, observation_space: gym.spaces.Dict, embed_dim: int = 64, heads: int = 4
                 ) -> None:
        max_jobs, max_cuts, cut_dim = observation_space["cut_features"].shape
        job_dim = observation_space["job_features"].shape[-1]
        global_dim = observation_space["global_features"].shape[-1]
        self.n_scores = max_jobs * max_cuts
        super().__init__(observation_space, self.n_scores + 2 * embed_dim + global_dim)
        self.cut_encoder = _mlp(cut_dim + global_dim, embed_dim, embed_dim)
        self.job_encoder = _mlp(job_dim + embed_dim + global_dim, embed_dim, embed_dim)
        self.attention = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
        # the first scoring layer acts on concat(cut, job context, global); it is split into
        # three linear maps so the job and global parts are computed once, not once per cut
        self.score_cut = nn.Linear(embed_dim, embed_dim)
        self.score_job = nn.Linear(embed_dim, embed_dim, bias=False)
        self.score_global = nn.Linear(embed_dim, embed_dim, bias=False)
        self.score_out = nn.Linear(embed_dim, 1)
        self.global_encoder = nn.Sequential(nn.Linear(global_dim, embed_dim), nn.ReLU())

    def reset_score_head(self) -> None:
        nn.init.orthogonal_(self.score_out.weight, gain=0.01)
        nn.init.zeros_(self.score_out.bias)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        cuts = observations["cut_features"]
        cut_mask = observations["cut_mask"] > 0.5
        job_mask = observations["job_mask"] > 0.5
        globals_ = observations["global_features"]
        batch, max_jobs, max_cuts, _ = cuts.shape

        global_per_cut = globals_[:, None, None, :].expand(batch, max_jobs, max_cuts, -1)
        cut_h = self.cut_encoder(torch.cat([cuts, global_per_cut], dim=-1))
        pooled_cuts = cut_h.masked_fill(~cut_mask[..., None], 0.0).amax(dim=2)
        global_per_job = globals_[:, None, :].expand(batch, max_jobs, -1)
        job_h = self.job_encoder(torch.cat([observations["job_features"], pooled_cuts,
                                            global_per_job], dim=-1))
        # a finished episode has no pending job: let attention see one so softmax stays finite
        padding = ~job_mask
        padding[:, 0] &= job_mask.any(dim=1)
        attended, _ = self.attention(job_h, job_h, job_h, key_padding_mask=padding)
        job_ctx = job_h + attended

        global_h = self.global_encoder(globals_)
        hidden = (self.score_cut(cut_h) + self.score_job(job_ctx)[:, :, None, :]
                  + self.score_global(global_h)[:, None, None, :])
        scores = self.score_out(torch.relu(hidden)).squeeze(-1).reshape(batch, -1)
        weights = job_mask.float()[..., None]
        mean_ctx = (job_ctx * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        max_ctx = job_ctx.masked_fill(~job_mask[..., None], 0.0).amax(dim=1)
        return torch.cat([scores, mean_ctx, max_ctx, globals_], dim=-1)
