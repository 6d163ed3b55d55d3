"""The graph scoring policy: equals fair with fair's weights, the shortest-work start follows
its rule, loads with the shape check, and the shipped policies keep their documented bounds on
fixed held-out workloads."""


import numpy as np
import pytest

from agents.evaluate import run_episode
from agents.scheduler import load_scheduler
from agents.spark_dag.policy import SHIPPED as SHIPPED_POLICIES
from agents.spark_dag.policy import (
    STAGE_FEATURES,
    ScoringPolicy,
    ShapeError,
    fair_weights,
    load_policy,
    shortest_work_weights,
)
from envs.spark_dag import (
    LiveSequenceGenerator,
    LiveSimulator,
    ObservationLimits,
    SparkDagShopEnv,
    load_live_templates,
)
from heuristics.spark_dag import make_heuristic

SHIPPED = SHIPPED_POLICIES["online"]
REAL = SHIPPED_POLICIES["real"]


def test_fair_weights_reproduce_fair():
    env = SparkDagShopEnv(observation_mode="graph", num_jobs=12, num_executors=20)
    for seed in (0, 1):
        fair = run_episode(env, make_heuristic("fair"), seed=seed)
        policy = run_episode(env, ScoringPolicy(*fair_weights()), seed=seed)
        assert policy["mean_jct_s"] == fair["mean_jct_s"]
        assert policy["decisions"] == fair["decisions"]


def test_shortest_work_start_picks_least_remaining_work_below_the_fair_share():
    """Every decision of the training start, checked against the rule restated on the raw
    state: the job with the least remaining work among those below ceil(E / J) with a
    schedulable stage; a free executor always goes somewhere when such a job exists."""
    policy = ScoringPolicy(*shortest_work_weights(), source_rule=False)
    env = SparkDagShopEnv(observation_mode="graph", num_jobs=10, num_executors=12, load=0.9)
    state, info = env.reset(seed=3)
    decisions = 0
    done = False
    while not done:
        mask = info["action_mask"]
        work = np.bincount(state.stage_job, weights=state.stage_remaining_network_s
                           + state.stage_remaining_compute_s, minlength=state.num_jobs)
        unlaunched = np.bincount(state.stage_job, weights=state.stage_unlaunched,
                                 minlength=state.num_jobs)
        share = -(-state.total_executors // max(int(np.count_nonzero(unlaunched)), 1))
        ready = set(state.stage_job[mask].tolist())
        below = [j for j in ready if state.job_executors[j] < share]
        decision = policy.act(state, mask)
        if state.free_executors > 0 and below:
            expected = min(below, key=lambda j: (work[j], j))
            assert decision is not None and decision.job_index == expected
            assert decision.parallelism == share
            decisions += 1
        else:
            assert decision is None
        state, _, terminated, truncated, info = env.step(decision)
        done = terminated or truncated
    assert decisions > 20


def test_round_trip_and_shape_check(tmp_path):
    policy = ScoringPolicy(*fair_weights(), shapes={"executors": [50]}, source_rule=False)
    path = policy.save(tmp_path / "p.json", {"note": "test"})
    loaded = load_policy(path, executors=50)
    assert loaded.score_weights.tolist() == policy.score_weights.tolist()
    assert loaded.source_rule is False
    with pytest.raises(ShapeError, match="validated for executors"):
        load_scheduler(str(path), executors=2)
    assert isinstance(load_scheduler(str(path), executors=2, allow_any_shape=True),
                      ScoringPolicy)
    with pytest.raises(ValueError, match="shape"):
        ScoringPolicy(np.zeros(3), np.zeros(len(STAGE_FEATURES)))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="malformed JSON"):
        load_policy(tmp_path / "bad.json")


def test_shipped_policy_beats_fair_on_held_out_synthetic_workloads():
    """The documented bound (docs/spark_dag.md): on these 6 held-out synthetic workloads (30
    jobs, 50 executors, load 0.85) the shipped policy's mean JCT is at most 0.92 x fair's on
    average (0.862 when it shipped), never worse than fair, with no invalid decision."""
    policy = load_policy(SHIPPED, executors=50)
    ratios = []
    env = SparkDagShopEnv(observation_mode="graph", num_jobs=30, num_executors=50, load=0.85)
    for seed in range(20_000, 20_006):
        jobs = env.generator(np.random.default_rng(seed))
        fair = run_episode(env, make_heuristic("fair"), seed=seed, options={"instance": jobs})
        mine = run_episode(env, policy, seed=seed, options={"instance": jobs})
        assert mine["invalid_actions"] == 0 and mine["jobs_done"] == 30
        ratios.append(mine["mean_jct_s"] / fair["mean_jct_s"])
    assert max(ratios) < 1.0
    assert float(np.mean(ratios)) <= 0.92


def live_streams(seeds: range, trace: str = "tpch_sf1_local_e1-2.json") -> list:
    """Held-out live-mode streams of a scale-1 trace (local[2] unless said): 20 jobs at offered
    load 1.5, as ``benchmarks.spark_real`` draws them."""
    templates = load_live_templates(SHIPPED.parents[1] / "data" / "spark_traces" / trace)
    generator = LiveSequenceGenerator(templates, num_jobs=20, load=1.5, num_executors=2)
    return [generator(np.random.default_rng(seed)) for seed in seeds]


def live_mean_jct_s(policy, jobs, contention: float = 0.4) -> float:
    run = LiveSimulator(2, ObservationLimits(), contention=contention).run(jobs, policy)
    assert run.invalid_actions == 0 and len(run.jct_s) == len(jobs)
    return run.mean_jct_s


def test_twice_the_fair_share_start_is_sjf_on_two_executors():
    """On 2 executors the ``shortest_work_x2`` training start takes the same decisions as
    ``sjf`` (least remaining work, all executors) in the live mode."""
    start = ScoringPolicy(*shortest_work_weights(2.0), source_rule=False)
    for jobs in live_streams(range(20_000, 20_003)):
        assert live_mean_jct_s(start, jobs) == live_mean_jct_s(make_heuristic("sjf"), jobs)


def test_real_spark_policy_beats_fair_in_the_live_mode_and_refuses_50_executors():
    """The live bridge's policy (``models/spark_dag_policy_real.json``, trained in the live mode
    on the scale-1 local[2] trace): on 6 held-out streams (20 jobs, load 1.5) its mean JCT is
    at most 0.80 x fair's on average (0.723 when it shipped) and never above sjf's by more than
    2%; it was validated on 2 executors only and is refused on 50."""
    policy = load_policy(REAL, executors=2)
    with pytest.raises(ShapeError):
        load_policy(REAL, executors=50)
    to_fair, to_sjf = [], []
    for jobs in live_streams(range(20_000, 20_006)):
        mine = live_mean_jct_s(policy, jobs)
        to_fair.append(mine / live_mean_jct_s(make_heuristic("fair"), jobs))
        to_sjf.append(mine / live_mean_jct_s(make_heuristic("sjf"), jobs))
    print(f"mean / fair {np.mean(to_fair):.3f}, / sjf {np.mean(to_sjf):.3f}, "
          f"worst / sjf {max(to_sjf):.3f}")
    assert float(np.mean(to_fair)) <= 0.80
    assert max(to_sjf) <= 1.02


def test_cluster_policy_beats_fair_and_weighted_fair_in_the_live_mode():
    """The 2-worker standalone cluster's policy (``models/spark_dag_policy_real_cluster.json``,
    trained in the live mode on the scale-1 trace of that cluster, where a node on 2 executors
    is no faster than on 1): on 6 held-out streams its mean JCT is at most 0.88 x fair's
    and below weighted_fair's, the best heuristic there; sjf-like limits (the local[2] policy)
    lose to fair there."""
    policy = load_policy(SHIPPED_POLICIES["real_cluster"], executors=2)
    ratios = {"fair": [], "weighted_fair": [], "local_policy": []}
    for jobs in live_streams(range(20_000, 20_006), "tpch_sf1_standalone_e1-2.json"):
        mine = live_mean_jct_s(policy, jobs)
        fair = live_mean_jct_s(make_heuristic("fair"), jobs)
        ratios["fair"].append(mine / fair)
        ratios["weighted_fair"].append(mine / live_mean_jct_s(make_heuristic("weighted_fair"),
                                                              jobs))
        ratios["local_policy"].append(live_mean_jct_s(load_policy(REAL), jobs) / fair)
    means = {name: float(np.mean(r)) for name, r in ratios.items()}
    print(means)
    assert means["fair"] <= 0.88
    assert means["weighted_fair"] < 1.0
    assert means["local_policy"] > 1.0
