"""The ONE session-scoped SparkSession of the spark_integration tests: local[2], FAIR with the
pool ladder, UI off, few shuffle partitions, event logging into a temporary directory."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SCALE = 0.1


@pytest.fixture(scope="session")
def event_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("eventlog")


@pytest.fixture(scope="session")
def spark(event_log_dir: Path):
    from spark_integration.session import build_session

    session = build_session("local[2]", app_name="pipesched-tests", pool_levels=(1, 2),
                            event_log_dir=event_log_dir, shuffle_partitions=4, lean_jvm=True,
                            min_pools_per_level=8,
                            # a task's OutOfMemoryError ends a local-mode JVM (Spark's
                            # uncaught-exception handler), taking every later test with it
                            conf={"spark.eventLog.compress": "false",
                                  "spark.driver.memory": "3g"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tables() -> dict[str, str]:
    from spark_integration.tpch import ensure_tpch, table_paths

    return table_paths(ensure_tpch(SCALE))


@pytest.fixture(scope="session")
def all_queries_run(spark, tables, statement_runs, tmp_path_factory: pytest.TempPathFactory):
    """Every query DAG once as a Spark-native batch (outputs kept), and the answer of its
    single-SQL statement (from ``statement_runs``); shared by the correctness, comparison and
    trace tests."""
    from spark_integration.executor import DagExecutor
    from spark_integration.jobs import batch
    from spark_integration.queries import QUERIES

    executor = DagExecutor(spark, None, tables=tables, work_dir=tmp_path_factory.mktemp("all"),
                           keep_outputs=True, progress=False)
    result = executor.run(batch(list(QUERIES)))
    return result, {name: statement_runs[name].rows for name in QUERIES}

EVENT_WAIT_S = 60.0


@dataclass(frozen=True)
class StatementRun:
    """One TPC-H statement run once in the shared session: its answer, plan_dag's estimate
    before and after the run (timed against Spark's own physical planning) and the stages Spark
    ran (from the event log)."""

    rows: list[Any]
    estimate: Any
    estimate_after_run: Any
    planning_ms: float
    plan_dag_ms: float
    ran: Any


@pytest.fixture(scope="session")
def tpch_views(spark, tables) -> None:
    from spark_integration.tpch_sql import register_tables

    register_tables(spark, tables)


@pytest.fixture(scope="session")
def statement_runs(spark, tpch_views, event_log_dir: Path) -> dict[str, StatementRun]:
    """The 22 single-statement TPC-H queries, each once, one after another: shared by the
    answer checks (test_tpch_sql) and the stage-DAG checks (test_plan_dag)."""
    from spark_integration.plan_dag import plan_dag, stages_ran
    from spark_integration.tpch_sql import STATEMENTS

    assert spark.conf.get("spark.sql.adaptive.enabled") == "true"
    tag = uuid.uuid4().hex[:8]
    runs = {}
    for name, sql in STATEMENTS.items():
        group = f"statement-{tag}-{name}"
        df = spark.sql(sql)
        start = time.perf_counter()
        df._jdf.queryExecution().executedPlan()
        planned = time.perf_counter()
        estimate = plan_dag(df)
        done = time.perf_counter()
        spark.sparkContext.setJobGroup(group, group)
        try:
            rows = df.collect()
        finally:
            spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        runs[name] = StatementRun(rows, estimate, plan_dag(df), (planned - start) * 1e3,
                                  (done - planned) * 1e3,
                                  stages_ran(event_log_dir, group, EVENT_WAIT_S))
    return runs
