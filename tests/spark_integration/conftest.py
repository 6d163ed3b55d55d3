"""The ONE session-scoped SparkSession of the spark_integration tests: local[2], FAIR with the
pool ladder, UI off, few shuffle partitions, event logging into a temporary directory."""

from __future__ import annotations

from pathlib import Path

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
def all_queries_run(spark, tables, tmp_path_factory: pytest.TempPathFactory):
    """Every query DAG once as a Spark-native batch (outputs kept) and every single-SQL
    reference answer; shared by the correctness, comparison and trace tests."""
    from concurrent.futures import ThreadPoolExecutor

    from spark_integration.executor import DagExecutor
    from spark_integration.jobs import batch
    from spark_integration.nodes import NodeRunner
    from spark_integration.queries import QUERIES

    executor = DagExecutor(spark, None, tables=tables, work_dir=tmp_path_factory.mktemp("all"),
                           keep_outputs=True, progress=False)
    result = executor.run(batch(list(QUERIES)))
    runner = NodeRunner(spark, tables)
    with ThreadPoolExecutor(4) as pool:  # overlap the driver-side work of the references
        expected = dict(zip(QUERIES, pool.map(runner.reference_rows, QUERIES.values()),
                            strict=True))
    return result, expected
