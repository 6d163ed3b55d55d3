"""Hand-computed single-job cases and invariants on every event of random and heuristic runs."""

import numpy as np
import pytest

from agents.evaluate import run_episode
from envs.spark_dag import ClusterSpec, Job, SparkDagShopEnv, Stage, ToyGenerator
from heuristics.spark_dag import HEURISTICS, make_heuristic
from tests.spark_dag.conftest import single_stage_job


def run(jobs, heuristic="fifo", **config):
    env = SparkDagShopEnv(record=True, **config)
    info = run_episode(env, make_heuristic(heuristic, env.limits), options={"instance": jobs})
    return info, env


def test_compute_only_waves_with_warmup():
    # 4 tasks of 2 s on 2 executors, warm-up 1 s: 1 + 2 + 2
    info, _ = run([single_stage_job()], num_executors=2, warmup_s=1.0, mode="batch")
    assert info["makespan_s"] == pytest.approx(5.0)
    assert info["mean_jct_s"] == pytest.approx(5.0)


def test_processor_sharing_of_the_network():
    # 4 tasks, 2 s of network each at full rate, C = 2: all four share -> 4 s, then 0.5 s compute
    job = single_stage_job(num_tasks=4, network_s=2.0, compute_s=0.5)
    info, env = run([job], num_executors=4, network_capacity=2.0, warmup_s=0.0, mode="batch")
    assert info["makespan_s"] == pytest.approx(4.5)
    np.testing.assert_allclose(env.sim.record.network_end_s, 4.0)


def test_staggered_flows_share_exactly():
    # C = 1, network phases of 2 s and 1 s start together on two executors
    job = Job("j", 0.0, [Stage(0, (), 2, network_s=[2.0, 1.0], compute_s=0.0 + 1e-9)])
    info, env = run([job], num_executors=2, network_capacity=1.0, warmup_s=0.0, mode="batch")
    # both at rate 1/2: B ends at 2 (1 s of work), then A alone at rate 1: 1 s left -> 3
    np.testing.assert_allclose(sorted(env.sim.record.network_end_s), [2.0, 3.0])
    assert info["makespan_s"] == pytest.approx(3.0, abs=1e-6)


def test_chain_waits_for_parent():
    job = Job("j", 0.0, [Stage(0, (), 2, compute_s=[1.0, 3.0]), Stage(1, (0,), 2, compute_s=1.0)])
    info, env = run([job], num_executors=2, warmup_s=0.0, mode="batch")
    assert info["makespan_s"] == pytest.approx(4.0)  # stage 1 starts when the 3 s task ends


def test_moving_delay_and_warmup():
    # one executor; A runs 1 s after a 1 s warm-up; B (arrives 0.5) pays warm-up + move: 2 + 3 + 1
    jobs = [single_stage_job("A", 0.0, 1, compute_s=1.0),
            single_stage_job("B", 0.5, 1, compute_s=1.0)]
    info, _ = run(jobs, num_executors=1, warmup_s=1.0, moving_delay_s=2.0)
    assert info["makespan_s"] == pytest.approx(6.0)
    assert info["mean_jct_s"] == pytest.approx((2.0 + 5.5) / 2)
    assert info["executor_moves"] == 1


@pytest.mark.parametrize("name", sorted(HEURISTICS))
def test_toy_optimum_reached_by_work_conserving_caps(name):
    toy = ToyGenerator(num_executors=4, waves=3, task_s=2.0)
    env = SparkDagShopEnv(mode="batch", num_executors=4, warmup_s=1.0, generator=toy)
    info = run_episode(env, make_heuristic(name, env.limits), seed=0)
    assert info["makespan_s"] == pytest.approx(toy.optimal_makespan_s(1.0))


def check_invariants(env: SparkDagShopEnv) -> None:
    sim, rec = env.sim, env.sim.record
    cluster = sim.cluster
    # every task ran exactly once, on a real executor, phases in order
    assert np.all(rec.executor >= 0) and np.all(rec.executor < cluster.num_executors)
    for name in ("start_s", "network_start_s", "network_end_s", "end_s"):
        assert not np.any(np.isnan(getattr(rec, name))), name
    assert np.all(rec.start_s <= rec.network_start_s + 1e-9)
    assert np.all(rec.network_start_s <= rec.network_end_s + 1e-9)
    assert np.all(rec.network_end_s <= rec.end_s + 1e-9)
    np.testing.assert_allclose(rec.end_s - rec.network_end_s, sim.task_local, atol=1e-6)
    # no executor slot double-booked
    for executor in range(cluster.num_executors):
        mine = np.flatnonzero(rec.executor == executor)
        order = mine[np.argsort(rec.start_s[mine])]
        assert np.all(rec.start_s[order[1:]] >= rec.end_s[order[:-1]] - 1e-9)
    # a stage never starts before all its parents finished; never before its job arrived
    first = np.array(sim._stage_offset)
    for parent, child in sim.edges:
        parent_end = rec.end_s[first[parent]:first[parent] + sim.stage_num[parent]].max()
        child_start = rec.start_s[first[child]:first[child] + sim.stage_num[child]].min()
        assert child_start >= parent_end - 1e-9
    task_job = np.repeat(sim.stage_job, sim.stage_num)
    assert np.all(rec.start_s >= sim.job_arrival_s[task_job] - 1e-9)
    # the network: replay n(t); each flow's work equals the integral of min(1, C / n)
    flows = np.flatnonzero(sim.task_network > 0)
    times = np.unique(np.concatenate([rec.network_start_s[flows], rec.network_end_s[flows]]))
    mids = (times[:-1] + times[1:]) / 2
    active = ((rec.network_start_s[flows][None, :] <= mids[:, None])
              & (rec.network_end_s[flows][None, :] > mids[:, None]))
    count = active.sum(axis=1)
    rate = np.where(count > 0, np.minimum(1.0, cluster.network_capacity / np.maximum(count, 1)), 0)
    assert np.all(rate * count <= cluster.network_capacity + 1e-9)
    delivered = (active * (rate * np.diff(times))[:, None]).sum(axis=0)
    np.testing.assert_allclose(delivered, sim.task_network[flows], rtol=1e-6, atol=1e-6)
    assert sim.peak_flows == count.max()


SMALL = {"num_jobs": 6, "num_executors": 8, "network_capacity": 3.0}


@pytest.mark.parametrize("mode", ["online", "batch"])
def test_invariants_random_policy(mode):
    env = SparkDagShopEnv(mode=mode, record=True, **SMALL)
    rng = np.random.default_rng(3)
    obs, info = env.reset(seed=11)
    last_time = 0.0
    while True:
        assert info["action_mask"].any()
        assert info["time_s"] >= last_time
        last_time = info["time_s"]
        obs, reward, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(
            info["action_mask"]))))
        assert info["reward_terms"]["makespan_increase_s"] >= 0
        if terminated or truncated:
            break
    assert terminated and info["invalid_actions"] == 0
    check_invariants(env)


@pytest.mark.parametrize("name", sorted(HEURISTICS))
def test_invariants_heuristics(name):
    env = SparkDagShopEnv(mode="online", record=True, **SMALL)
    info = run_episode(env, make_heuristic(name, env.limits), seed=5)
    assert info["invalid_actions"] == 0 and info["jobs_done"] == SMALL["num_jobs"]
    check_invariants(env)


def test_executor_caps_respected_by_fair():
    env = SparkDagShopEnv(mode="online", **SMALL)
    obs, info = env.reset(seed=2)
    scheduler = make_heuristic("fair", env.limits)
    while True:
        state = env._state
        if state.num_jobs:
            fair_share = -(-state.total_executors // state.num_jobs)
            # fair never raises a job above ceil(E / J) at the moment it decides
            action = scheduler.act(obs, info["action_mask"])
            if action != env.limits.wait_action:
                job = action // (env.limits.max_stages * env.limits.num_levels)
                assert state.job_executors[job] < fair_share
        else:
            action = scheduler.act(obs, info["action_mask"])
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break


def test_cluster_validation_in_env():
    with pytest.raises(ValueError, match="num_executors"):
        SparkDagShopEnv(num_executors=0)
    with pytest.raises(ValueError, match="unknown config key"):
        SparkDagShopEnv(executors=3)
    assert ClusterSpec().moving_delay_s == 2.0 and ClusterSpec().warmup_s == 1.0
