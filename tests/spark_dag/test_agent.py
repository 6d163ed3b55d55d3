"""The padded GNN extractor (for SB3 policies on the padded view) passes messages upward."""

import numpy as np
import torch

from agents.spark_dag.extractor import SparkGnnExtractor
from envs.spark_dag import SparkDagShopEnv


def test_gnn_messages_flow_from_children_to_parents():
    env = SparkDagShopEnv(num_jobs=3, max_jobs=4, max_stages=20)
    obs, _ = env.reset(seed=0)
    extractor = SparkGnnExtractor(env.observation_space, embed_dim=8, num_rounds=2)
    batch = {k: torch.as_tensor(v)[None] for k, v in obs.items()}
    out = extractor(batch)
    assert out.shape == (1, env.action_space.n + 8)
    # changing a stage that has a parent changes that parent's scores (messages go upward)
    parent, child = np.argwhere(obs["adjacency"][0] > 0)[0]
    changed = {k: v.clone() for k, v in batch.items()}
    changed["stage_features"][0, 0, child, 8] += 3.0
    scores = out[0, :-9].reshape(4, 20, -1)
    new_scores = extractor(changed)[0, :-9].reshape(4, 20, -1)
    assert not torch.allclose(scores[0, parent], new_scores[0, parent])
    # padded job slots do not influence real ones
    padded = {k: v.clone() for k, v in batch.items()}
    padded["stage_features"][0, 3] = 5.0
    padded["adjacency"][0, 3] = 1.0
    torch.testing.assert_close(extractor(padded)[0, :20 * 4 * 3], out[0, :20 * 4 * 3])
