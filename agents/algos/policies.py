"""A MaskablePPO policy whose action logits are per-choice scores from the features extractor.

SB3's default head is a dense layer from a latent vector to every action, which ties each
logit to a fixed slot. For set- and graph-structured choices (jobs x cuts, DAG stages) the
extractor instead scores each choice with shared weights; this policy passes those scores
through unchanged. The extractor must set ``n_scores`` and put the scores first in its output.
"""

from __future__ import annotations

import torch
from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy
from torch import nn


class ScoreSlice(nn.Module):
    """The first ``n_scores`` features are the logits."""

    def __init__(self, n_scores: int) -> None:
        super().__init__()
        self.n_scores = n_scores

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return latent[..., : self.n_scores]


class ScorePolicy(MaskableMultiInputActorCriticPolicy):
    """Use with ``net_arch=dict(pi=[], vf=[...])`` so the actor latent is the raw features."""

    def _build(self, lr_schedule) -> None:  # noqa: ANN001  (SB3 signature)
        super()._build(lr_schedule)
        self.action_net = ScoreSlice(self.features_extractor.n_scores)
        if hasattr(self.features_extractor, "reset_score_head"):
            self.features_extractor.reset_score_head()
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1),
                                              **self.optimizer_kwargs)
