"""The shipped GNN agent loads, drives the env with valid actions only, and is small."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.evaluate import run_episode
from agents.extractors.spark_gnn import SparkGnnExtractor
from agents.scheduler import load_scheduler
from envs.spark_dag import SparkDagShopEnv

MODEL = Path(__file__).resolve().parents[2] / "models" / "spark_dag_agent"


@pytest.fixture
def one_torch_thread():
    # batch-1 inference: extra threads only contend on a shared machine (100 ms vs 5 ms a step)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_shipped_agent_runs_online_and_batch(one_torch_thread):
    assert MODEL.with_suffix(".zip").stat().st_size < 5 * 1024 * 1024
    meta = json.loads(MODEL.with_suffix(".json").read_text())
    scheduler = load_scheduler(str(MODEL.with_suffix(".zip")))
    kwargs = {**meta["env_kwargs"], "num_jobs": 3}
    env = SparkDagShopEnv(**kwargs)
    info = run_episode(env, scheduler, seed=123)
    assert info["invalid_actions"] == 0 and info["jobs_done"] == 3
    assert np.isfinite(info["mean_jct_s"])
    batch = SparkDagShopEnv(**{**kwargs, "mode": "batch"})
    info = run_episode(batch, scheduler, seed=5)
    assert info["invalid_actions"] == 0 and info["makespan_s"] > 0


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
