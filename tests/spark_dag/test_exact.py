import numpy as np
import pytest

from agents.evaluate import run_episode
from envs.spark_dag import ClusterSpec, Job, SparkDagShopEnv, Stage, TPCHLikeGenerator
from heuristics.exact.spark_dag import spark_makespan_lower_bound, spark_optimal_makespan
from heuristics.spark_dag import HEURISTICS, make_heuristic
from tests.spark_dag.conftest import single_stage_job

NO_DELAY = ClusterSpec(num_executors=2, network_capacity=1.0, moving_delay_s=0.0, warmup_s=0.0)


def test_exact_single_stage():
    result = spark_optimal_makespan([single_stage_job(num_tasks=4, compute_s=2.0)], NO_DELAY)
    assert result.optimal and result.makespan_s == pytest.approx(4.0)


def test_exact_overlaps_network_with_compute():
    jobs = [single_stage_job("net", num_tasks=2, network_s=2.0, compute_s=0.0 + 1e-3),
            single_stage_job("cpu", num_tasks=2, compute_s=2.0)]
    result = spark_optimal_makespan(jobs, NO_DELAY)
    # one network channel: the two shuffle reads go one after the other while compute overlaps
    assert result.optimal and result.makespan_s == pytest.approx(4.0, abs=0.02)


def test_exact_respects_precedence():
    job = Job("chain", 0.0, [Stage(0, (), 1, compute_s=3.0), Stage(1, (0,), 2, compute_s=1.0)])
    result = spark_optimal_makespan([job], NO_DELAY)
    assert result.optimal and result.makespan_s == pytest.approx(4.0)


def test_exact_rejects_delays_and_large_instances():
    with pytest.raises(ValueError, match="moving_delay_s = warmup_s = 0"):
        spark_optimal_makespan([single_stage_job()], ClusterSpec(num_executors=2))
    with pytest.raises(ValueError, match="max_tasks"):
        spark_optimal_makespan([single_stage_job(num_tasks=50)], NO_DELAY, max_tasks=10)


def test_lower_bound_terms():
    jobs = [single_stage_job(num_tasks=4, network_s=1.0, compute_s=1.0)]
    cluster = ClusterSpec(num_executors=4, network_capacity=1.0, warmup_s=1.0)
    assert spark_makespan_lower_bound(jobs, cluster) == pytest.approx(4.0)  # network: 4 / 1
    cluster = ClusterSpec(num_executors=1, network_capacity=10.0, warmup_s=1.0)
    assert spark_makespan_lower_bound(jobs, cluster) == pytest.approx(9.0)  # slots: (8 + 1) / 1


@pytest.mark.parametrize("seed", [0, 1])
def test_bound_and_optimum_below_every_heuristic(seed):
    gen = TPCHLikeGenerator(num_jobs=2, mode="batch", median_stages=2, max_stages=3,
                            median_tasks=2, max_tasks=3, task_skew=0.0)
    env = SparkDagShopEnv(mode="batch", observation_mode="graph", num_executors=2,
                          network_capacity=1.0,
                          moving_delay_s=0.0, warmup_s=0.0, generator=gen)
    jobs = gen(np.random.default_rng(seed))
    result = spark_optimal_makespan(jobs, env.cluster, time_limit_s=10)
    bound = spark_makespan_lower_bound(jobs, env.cluster)
    assert result.optimal and bound <= result.makespan_s + 0.01
    for name in HEURISTICS:
        info = run_episode(env, make_heuristic(name), options={"instance": jobs})
        assert info["makespan_s"] >= bound - 1e-6
        assert info["makespan_s"] >= result.makespan_s - 0.02 * len(jobs), name
