"""``pipesched/SparkDagShopGraph-v0``: Gymnasium Graph spaces that sample members and pass
check_env, observations that restate the ClusterState, masks that admit exactly valid actions,
invalid actions as counted no-ops, graph heuristics giving the same episodes as the graph mode
of the padded env, and the GNN example of docs/spark_dag.md running as written."""

import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env, data_equivalence

import envs
from envs.scheduler import run_episode
from envs.spark_dag import Decision, SparkDagShopEnv
from envs.spark_dag.graph_env import NODE_FEATURES, SparkDagShopGraphEnv
from envs.spark_dag.observation import decision_is_valid
from heuristics.spark_dag import make_heuristic

ENV_ID = "pipesched/SparkDagShopGraph-v0"
SMALL = {"num_jobs": 5, "num_executors": 8, "network_capacity": 3.0}
DOC = Path(__file__).resolve().parents[2] / "docs" / "spark_dag.md"


def play_heuristic(env: SparkDagShopGraphEnv, name: str, seed: int, on_state=None) -> dict:
    """One episode of a graph heuristic on the graph env, through ``action_of``."""
    scheduler = make_heuristic(name)
    scheduler.reset()
    obs, info = env.reset(seed=seed)
    while True:
        if on_state is not None:
            on_state(env, obs, info)
        decision = scheduler.act(env.state, env.state.stage_schedulable)
        obs, _, terminated, truncated, info = env.step(env.action_of(decision))
        if terminated or truncated:
            return info


def test_the_id_is_registered_with_the_graph_class():
    assert envs.GRAPH_ENV_IDS[ENV_ID].endswith(":SparkDagShopGraphEnv")
    env = gym.make(ENV_ID, **SMALL)
    assert type(env.unwrapped) is SparkDagShopGraphEnv
    assert env.unwrapped.config.observation_mode == "graph"


@pytest.mark.parametrize("mode", ["online", "batch"])
def test_check_env_passes_without_warnings(mode):
    env = gym.make(ENV_ID, mode=mode, render_mode="ansi", **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=False)


def test_sample_returns_members_of_both_spaces():
    env = SparkDagShopGraphEnv(**SMALL)
    for seed in range(5):
        env.observation_space.seed(seed)
        env.action_space.seed(seed)
        assert env.observation_space.contains(env.observation_space.sample())
        assert env.action_space.contains(env.action_space.sample())


def _restates_the_state(env, obs, info):
    state = env.state
    assert env.observation_space.contains(obs)
    graph = obs["graph"]
    assert graph.nodes.shape == (state.num_stages, len(NODE_FEATURES))
    np.testing.assert_array_equal(graph.edge_links, state.edges)
    np.testing.assert_array_equal(np.repeat(np.arange(state.num_jobs), np.diff(obs["job_ptr"])),
                                  state.stage_job)
    np.testing.assert_array_equal(obs["stage_mask"], state.stage_schedulable)
    np.testing.assert_array_equal(obs["job_executors"], state.job_executors)
    assert obs["free_executors"] == state.free_executors
    column = {name: graph.nodes[:, k] for k, name in enumerate(NODE_FEATURES)}
    np.testing.assert_array_equal(column["schedulable"], state.stage_schedulable)
    np.testing.assert_allclose(column["finished_fraction"],
                               state.stage_finished / state.stage_num_tasks, rtol=1e-6)
    np.testing.assert_allclose(column["job_executor_fraction"],
                               state.job_executors[state.stage_job] / state.total_executors,
                               rtol=1e-6)
    mask = info["action_mask"]
    np.testing.assert_array_equal(mask["stage_index"][1:1 + state.num_stages], obs["stage_mask"])
    assert not mask["stage_index"][1 + state.num_stages:].any()
    for row in np.flatnonzero(obs["stage_mask"]).tolist():  # every masked pair is valid
        for limit in np.flatnonzero(mask["parallelism"]).tolist():
            job = int(state.stage_job[row])
            decision = Decision(job, int(state.stage_id[row]), limit + 1)
            assert decision_is_valid(decision, state)


@pytest.mark.parametrize("mode", ["online", "batch"])
def test_observations_restate_the_cluster_state_and_masks_admit_valid_pairs(mode):
    env = SparkDagShopGraphEnv(mode=mode, **SMALL)
    info = play_heuristic(env, "fair", seed=2, on_state=_restates_the_state)
    assert info["complete"] and info["invalid_actions"] == 0


def test_masked_samples_never_draw_an_invalid_action():
    env = SparkDagShopGraphEnv(**SMALL)
    env.action_space.seed(5)
    obs, info = env.reset(seed=5)
    steps = 0
    while True:
        obs, _, terminated, truncated, info = env.step(
            env.action_space.sample(mask=info["action_mask"]))
        assert env.observation_space.contains(obs)  # the terminal one (no node) too
        steps += 1
        if terminated or truncated:
            break
    assert info["complete"] and info["invalid_actions"] == 0 and info["mean_jct_s"] > 0
    assert obs["graph"].nodes.shape[0] == 0 and steps > SMALL["num_jobs"]


def _assert_no_op(env, action, before_obs, before_info):
    invalid = env.invalid_actions
    obs, reward, terminated, truncated, info = env.step(action)
    assert info["invalid_actions"] == invalid + 1 and reward == -1.0
    assert info["time_s"] == before_info["time_s"] and not terminated and not truncated
    assert data_equivalence(obs, before_obs, exact=True)
    assert data_equivalence(info["action_mask"], before_info["action_mask"], exact=True)


def test_invalid_actions_are_counted_no_ops():
    env = SparkDagShopGraphEnv(mode="batch", **SMALL)
    obs, info = env.reset(seed=4)
    state = env.state
    blocked = int(np.flatnonzero(~state.stage_schedulable)[0])
    for action in ({"stage_index": blocked, "parallelism": 8},            # not schedulable
                   {"stage_index": state.num_stages, "parallelism": 8},   # no such node
                   {"stage_index": -1, "parallelism": 8},                 # wait, nothing pending
                   {"stage_index": 0, "parallelism": 9},                  # limit above E
                   3):                                                    # not a Dict action
        _assert_no_op(env, action, obs, info)
    assert env.invalid_actions == 5


def test_a_limit_not_above_what_the_job_holds_is_a_no_op():
    env = SparkDagShopGraphEnv(**SMALL)
    found = []

    def try_low_limit(env, obs, info):
        rows = np.flatnonzero(obs["stage_mask"] & (obs["job_executors"][env.state.stage_job] > 0))
        if rows.size and not found:
            held = int(obs["job_executors"][env.state.stage_job[rows[0]]])
            _assert_no_op(env, {"stage_index": int(rows[0]), "parallelism": held}, obs, info)
            found.append(held)

    info = play_heuristic(env, "fair", seed=1, on_state=try_low_limit)
    assert found and info["invalid_actions"] == 1 and info["complete"]


@pytest.mark.parametrize("heuristic", ["fair", "fifo"])
def test_heuristics_give_the_graph_modes_episode(heuristic):
    graph_env = SparkDagShopGraphEnv(**SMALL)
    padded_env = SparkDagShopEnv(observation_mode="graph", **SMALL)
    jcts = []
    for seed in (0, 1, 2):
        ours = play_heuristic(graph_env, heuristic, seed)
        theirs = run_episode(padded_env, make_heuristic(heuristic), seed=seed)
        assert ours["invalid_actions"] == theirs["invalid_actions"] == 0
        for key in ("mean_jct_s", "makespan_s", "decisions", "executor_moves"):
            assert ours[key] == theirs[key], (seed, key)
        jcts.append(ours["mean_jct_s"])
    assert len(set(jcts)) == 3  # three distinct workloads, not one replayed


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="observation_mode"):
        SparkDagShopGraphEnv(observation_mode="padded")
    with pytest.raises(ValueError, match="max_nodes"):
        SparkDagShopGraphEnv(max_nodes=0)
    with pytest.raises(ValueError, match="num_jobz"):
        SparkDagShopGraphEnv(num_jobz=3)
    with pytest.raises(ValueError, match="max_nodes=3"):
        SparkDagShopGraphEnv(max_nodes=3, **SMALL).reset(seed=0)


def test_the_docs_gnn_example_trains_on_the_env(capsys):
    section = DOC.read_text().split("## The graph environment", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    torch.manual_seed(0)
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 (the documented example)
    info, model = namespace["info"], namespace["model"]
    assert info["complete"] and info["invalid_actions"] == 0 and info["mean_jct_s"] > 0
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert len(capsys.readouterr().out.splitlines()) == namespace["EPISODES"]
