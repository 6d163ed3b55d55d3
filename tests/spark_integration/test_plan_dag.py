"""plan_dag's estimate of every TPC-H statement's stage DAG against the stages Spark ran (the
event log of the session-scoped ``spark`` fixture), the signature, and dag_difference's rules
on hand-made DAGs."""

from __future__ import annotations

import statistics
import time
import uuid

import pytest

from spark_integration.plan_dag import (
    INHERENT,
    PlanDag,
    PlanStage,
    RanDag,
    ShuffledJoin,
    dag_difference,
    plan_dag,
    stage_matching,
    stages_ran,
)
from spark_integration.tpch_sql import STATEMENTS, register_tables
from tests.spark_integration.conftest import EVENT_WAIT_S, StatementRun

# joins whose one input is empty at run time (no row has a negative quantity or price) but
# large by the plan's statistics: AQE replaces them with empty relations
EMPTY_AT_RUN_TIME = {
    "empty_shuffled_side": """
        select o_orderpriority, count(*) as n from orders join
          (select l_orderkey from lineitem where l_quantity < 0 group by l_orderkey) as x
          on o_orderkey = x.l_orderkey
        group by o_orderpriority order by o_orderpriority""",
    "empty_aggregate_side": """
        select c_mktsegment, count(*) as n from customer join
          (select o_custkey, count(*) as c from orders where o_totalprice < 0
           group by o_custkey) as x on c_custkey = x.o_custkey
        group by c_mktsegment""",
}


@pytest.fixture(scope="module")
def tpch_runs(statement_runs) -> dict[str, StatementRun]:
    return statement_runs


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    half = 1.96 * statistics.stdev(values) / len(values) ** 0.5
    return (f"mean {mean:.1f} (95% CI {mean - half:.1f}..{mean + half:.1f}), "
            f"median {statistics.median(values):.1f}, max {max(values):.1f}")


def _report(runs: dict[str, StatementRun]) -> None:
    print("\nquery  est  ran  est tasks  ran tasks  est MB  ran MB  plan ms  plan_dag ms  "
          "difference")
    for name, run in runs.items():
        est, ran = run.estimate.stages, run.ran.stages
        print(f"{name:5} {len(est):4} {len(ran):4} {sum(s.partitions for s in est):10} "
              f"{sum(s.partitions for s in ran):10} "
              f"{sum(s.input_bytes for s in est) / 1e6:7.1f} "
              f"{sum(s.input_bytes for s in ran) / 1e6:7.1f} {run.planning_ms:8.0f} "
              f"{run.plan_dag_ms:12.0f}  {dag_difference(run.estimate, run.ran) or '-'}")
    print(f"plan_dag ms over {len(runs)} statements: "
          f"{_spread([r.plan_dag_ms for r in runs.values()])}")
    print(f"Spark planning ms: {_spread([r.planning_ms for r in runs.values()])}")


def test_estimate_has_the_stages_and_dependencies_that_ran(tpch_runs) -> None:
    _report(tpch_runs)
    differences = {name: dag_difference(run.estimate, run.ran)
                   for name, run in tpch_runs.items()}
    wrong = {name: d for name, d in differences.items()
             if d is not None and not d.startswith(INHERENT)}
    assert not wrong, wrong
    inherent = [name for name, d in differences.items() if d is not None]
    print(f"{len(STATEMENTS) - len(inherent)} of {len(STATEMENTS)} statements ran the "
          f"estimated DAG; AQE changed it at run time in {inherent or 'none'}")
    for name in inherent:  # only what the event log shows AQE did may explain a difference
        ran = tpch_runs[name].ran
        assert ran.runtime_broadcast_joins or ran.empty_relations, name
    assert all(not run.ran.unplaced for run in tpch_runs.values())


def test_estimate_is_the_same_after_the_dataframe_ran(tpch_runs) -> None:
    for name, run in tpch_runs.items():
        assert run.estimate_after_run == run.estimate, name


def test_stages_that_read_no_shuffle_ran_the_estimated_tasks(tpch_runs) -> None:
    """Tasks of stages fed by file scans only are file splits, which AQE leaves alone."""
    for name, run in tpch_runs.items():
        if dag_difference(run.estimate, run.ran) is None:
            assert stage_matching(run.estimate, run.ran, scan_tasks=True) is not None, name


def test_every_stage_kind_is_exercised(tpch_runs) -> None:
    kinds = {s.kind for run in tpch_runs.values() for s in run.ran.stages}
    assert kinds == {"shuffle", "broadcast", "subquery", "sample", "result"}


def test_plan_dag_runs_no_spark_job(spark, tpch_views) -> None:
    group = f"plan_dag-only-{uuid.uuid4().hex[:8]}"
    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup(group, group)
    try:
        for name in ("q2", "q11", "q15", "q22"):  # subqueries, reuse, a runtime join switch
            plan_dag(spark.sql(STATEMENTS[name]))
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    # the status tracker hears of jobs through the listener bus, in order: once a later job
    # shows, any job plan_dag had started would show too
    marker = f"{group}-marker"
    spark.sparkContext.setJobGroup(marker, marker)
    try:
        spark.range(1).count()
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    deadline = time.monotonic() + EVENT_WAIT_S
    while not tracker.getJobIdsForGroup(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tracker.getJobIdsForGroup(marker)
    assert tracker.getJobIdsForGroup(group) == []


def test_signature_is_the_statement_not_the_dataframe(spark, tpch_views, tables) -> None:
    first = plan_dag(spark.sql(STATEMENTS["q3"])).signature
    assert plan_dag(spark.sql(STATEMENTS["q3"])).signature == first
    other_session = spark.newSession()
    register_tables(other_session, tables)
    assert plan_dag(other_session.sql(STATEMENTS["q3"])).signature == first
    machinery = STATEMENTS["q3"].replace("'BUILDING'", "'MACHINERY'")
    assert machinery != STATEMENTS["q3"]
    assert plan_dag(spark.sql(machinery)).signature != first
    later = STATEMENTS["q6"].replace("1994-01-01", "1995-01-01")
    assert later != STATEMENTS["q6"]
    assert plan_dag(spark.sql(later)).signature != plan_dag(spark.sql(STATEMENTS["q6"])).signature


@pytest.mark.parametrize("name", sorted(EMPTY_AT_RUN_TIME))
def test_empty_relation_at_run_time_is_an_inherent_difference(spark, tpch_views, event_log_dir,
                                                              name) -> None:
    group = f"plan_dag-{uuid.uuid4().hex[:8]}-{name}"
    df = spark.sql(EMPTY_AT_RUN_TIME[name])
    estimate = plan_dag(df)
    spark.sparkContext.setJobGroup(group, group)
    try:
        df.collect()
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    ran = stages_ran(event_log_dir, group, EVENT_WAIT_S)
    difference = dag_difference(estimate, ran)
    print(f"\n{name}: {difference}")
    assert ran.empty_relations >= 1
    assert len(ran.stages) < len(estimate.stages)
    assert difference is not None and difference.startswith(INHERENT) and "empty" in difference


def test_stages_ran_names_a_group_the_log_lacks(spark, event_log_dir) -> None:
    with pytest.raises(ValueError, match="no job of job group 'no-such-group'"):
        stages_ran(event_log_dir, "no-such-group")


# ---------------------------------------------------------------- dag_difference's rules


def _stages(*spec: tuple[str, tuple[int, ...]]) -> tuple[PlanStage, ...]:
    return tuple(PlanStage(i, parents, kind, 2, 0) for i, (kind, parents) in enumerate(spec))


# two scans shuffled into a sort-merge join, then the result
SHUFFLED_JOIN = PlanDag("sig", _stages(("shuffle", ()), ("shuffle", ()), ("result", (0, 1))),
                        (ShuffledJoin(2, (0, 1)),))


def test_same_structure_is_no_difference() -> None:
    ran = RanDag("g", _stages(("shuffle", ()), ("shuffle", ()), ("result", (1, 0))), (5, 6, 7))
    assert dag_difference(SHUFFLED_JOIN, ran) is None


def test_a_missing_dependency_is_a_difference() -> None:
    ran = RanDag("g", _stages(("shuffle", ()), ("shuffle", ()), ("result", (1,))), (5, 6, 7))
    difference = dag_difference(SHUFFLED_JOIN, ran)
    assert difference is not None and not difference.startswith(INHERENT)
    assert "shuffle->result 2 vs 1" in difference


def test_a_runtime_broadcast_join_is_inherent_only_when_the_log_shows_it() -> None:
    # the second input turned out small: a broadcast job reads its shuffle
    stages = _stages(("shuffle", ()), ("shuffle", ()), ("broadcast", (1,)), ("result", (0, 2)))
    switched = RanDag("g", stages, (1, 2, 3, 4), runtime_broadcast_joins=1)
    assert dag_difference(SHUFFLED_JOIN, switched).startswith(INHERENT)
    unexplained = RanDag("g", stages, (1, 2, 3, 4))
    assert not dag_difference(SHUFFLED_JOIN, unexplained).startswith(INHERENT)


def test_a_runtime_switch_must_match_the_estimate_with_that_switch() -> None:
    # two broadcasts where the estimate has one shuffled join: no switch explains it
    stages = _stages(("broadcast", ()), ("broadcast", ()), ("result", (0, 1)))
    ran = RanDag("g", stages, (1, 2, 3), runtime_broadcast_joins=1)
    assert not dag_difference(SHUFFLED_JOIN, ran).startswith(INHERENT)
