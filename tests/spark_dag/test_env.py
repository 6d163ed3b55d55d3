import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the ids)
from agents.evaluate import run_episode
from envs.spark_dag import (
    ClusterState,
    JobProgress,
    ObservationLimits,
    SparkDagShopEnv,
    action_mask,
    decode_action,
    encode_action,
    encode_observation,
)
from heuristics.spark_dag import make_heuristic

SMALL = {"num_jobs": 5, "num_executors": 8, "network_capacity": 3.0}


@pytest.mark.parametrize("mode", ["online", "batch"])
def test_check_env(mode):
    env = gym.make("pipesched/SparkDagShop-v0", mode=mode, render_mode="ansi", **SMALL)
    check_env(env.unwrapped, skip_render_check=False)


def trajectory(seed):
    env = SparkDagShopEnv(**SMALL)
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    rewards = []
    while True:
        obs, reward, terminated, truncated, info = env.step(
            int(rng.choice(np.flatnonzero(info["action_mask"]))))
        rewards.append(reward)
        if terminated or truncated:
            return rewards, info


def test_determinism():
    first, info_a = trajectory(7)
    second, info_b = trajectory(7)
    assert first == second and info_a["mean_jct_s"] == info_b["mean_jct_s"]
    other, _ = trajectory(8)
    assert other != first


def test_instance_replay_and_reward_sums():
    env = SparkDagShopEnv(observation_mode="graph", **SMALL)
    jobs = env.generator(np.random.default_rng(3))
    scheduler = make_heuristic("fair")
    totals = []
    for seed in (1, 2):
        obs, info = env.reset(seed=seed, options={"instance": jobs})
        total = 0.0
        while True:
            obs, reward, terminated, truncated, info = env.step(scheduler.act(obs, info["action_mask"]))
            total += reward
            if terminated or truncated:
                break
        totals.append((total, info["mean_jct_s"]))
    assert totals[0] == totals[1]
    # online return = -0.01 * integral of jobs in system = -0.01 * sum of JCTs
    assert totals[0][0] == pytest.approx(-0.01 * totals[0][1] * len(jobs), rel=1e-9)

    batch = SparkDagShopEnv(mode="batch", observation_mode="graph", **SMALL)
    obs, info = batch.reset(seed=0, options={"instance": jobs})  # arrivals forced to 0
    total = 0.0
    while True:
        obs, reward, terminated, truncated, info = batch.step(scheduler.act(obs, info["action_mask"]))
        total += reward
        if terminated or truncated:
            break
    assert total == pytest.approx(-0.1 * info["makespan_s"])
    assert info["mean_jct_s"] > 0 and info["makespan_s"] >= info["mean_jct_s"]


def test_invalid_action_is_a_counted_noop():
    env = SparkDagShopEnv(**SMALL)
    obs, info = env.reset(seed=0)
    invalid = int(np.flatnonzero(~info["action_mask"])[0])
    time_before = info["time_s"]
    obs2, reward, terminated, truncated, info2 = env.step(invalid)
    assert reward == -1.0 and info2["invalid_actions"] == 1
    assert info2["time_s"] == time_before
    for key in obs:
        np.testing.assert_array_equal(obs[key], obs2[key])
    np.testing.assert_array_equal(env.action_masks(), info2["action_mask"])
    env.step(env.action_space.n + 5)  # out of range: also a no-op, never raises
    assert env.invalid_actions == 2


def test_render_ansi():
    env = SparkDagShopEnv(render_mode="ansi", observation_mode="graph", **SMALL)
    run_episode(env, make_heuristic("fifo"), seed=0)
    text = env.render()
    assert "jobs done 5/5" in text and text.count("|") >= 10


def test_bridge_built_state_encodes_like_the_simulator():
    """A state rebuilt from per-job lists (what the live bridge does) gives the same
    observation, mask and decisions as the simulator's own snapshot."""
    env = SparkDagShopEnv(**SMALL)
    env.reset(seed=4)
    env.step(int(np.flatnonzero(env.action_masks())[0]))
    state = env._state
    progress = []
    for j, name in enumerate(state.job_names):
        rows = np.flatnonzero(state.stage_job == j)
        parents = [[int(state.stage_id[p]) for p, c in state.edges if c == r] for r in rows]
        progress.append(JobProgress(
            name=name, arrival_s=float(state.job_arrival_s[j]),
            stage_ids=state.stage_id[rows].tolist(), parents=parents,
            num_tasks=state.stage_num_tasks[rows].tolist(),
            finished=state.stage_finished[rows].tolist(),
            running=state.stage_running[rows].tolist(),
            waiting=state.stage_waiting[rows].tolist(),
            remaining_network_s=state.stage_remaining_network_s[rows].tolist(),
            remaining_compute_s=state.stage_remaining_compute_s[rows].tolist(),
            executors=state.stage_executors[rows].tolist(),
            opened=state.stage_opened[rows].tolist(),
            executor_limit=int(state.job_executor_limit[j])))
    rebuilt = ClusterState.from_jobs(state.time_s, state.total_executors, state.free_executors,
                                     state.network_capacity, state.network_flows, progress,
                                     events_pending=state.events_pending)
    rebuilt.validate()
    a, b = encode_observation(state, env.limits), encode_observation(rebuilt, env.limits)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], err_msg=key)
    mask = action_mask(state, env.limits)
    np.testing.assert_array_equal(mask, action_mask(rebuilt, env.limits))
    for action in np.flatnonzero(mask):
        assert decode_action(action, state, env.limits) == decode_action(action, rebuilt, env.limits)


def test_action_layout_and_levels():
    limits = ObservationLimits(max_jobs=2, max_stages=3, cap_share_multiples=(1.0,))
    state = ClusterState.from_jobs(
        0.0, 10, 10, 2.0, 0,
        [JobProgress("a", 0.0, [5, 6], [[], [5]], [4, 1], [0, 0], [0, 0], [4, 1], [1, 1],
                     [1, 1], [0, 0]),
         JobProgress("b", 0.0, [0], [[]], [2], [0], [0], [2], [0, ], [1], [0])],
        events_pending=False)
    mask = action_mask(state, limits)
    valid = set(np.flatnonzero(mask).tolist())
    # job a stage slot 0 (id 5) and job b slot 0 are runnable; stage 6 waits for 5; no wait
    assert valid == {encode_action(0, 0, 0, limits), encode_action(0, 0, 1, limits),
                     encode_action(1, 0, 0, limits), encode_action(1, 0, 1, limits)}
    decision = decode_action(encode_action(0, 0, 0, limits), state, limits)
    assert (decision.job_index, decision.stage_id, decision.parallelism) == (0, 5, 5)  # ceil(10/2)
    assert decode_action(encode_action(1, 0, 1, limits), state, limits).parallelism == 10
    assert decode_action(limits.wait_action, state, limits) is None
    assert decode_action(encode_action(0, 1, 0, limits), state, limits) is None


def test_too_many_stages_is_a_clear_error():
    jobs = SparkDagShopEnv(**SMALL).generator(np.random.default_rng(0))
    deep = max(jobs, key=lambda job: len(job.stages))
    env = SparkDagShopEnv(max_stages=len(deep.stages) - 1, **SMALL)
    with pytest.raises(ValueError, match=f"job '{deep.name}' has .* stages > max_stages"):
        env.reset(seed=0, options={"instance": jobs})
