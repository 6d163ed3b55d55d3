"""Materialise query nodes: run one node's SQL and write its result as parquet.

A node launched with parallelism ``p`` runs in a SparkSession (sharing the one SparkContext)
whose shuffle and file-split partition counts are ``p * tasks_per_executor``, so its shuffle
stages have exactly that many tasks (adaptive coalescing off) and cannot spread over more than
that many executors.
"""

from __future__ import annotations

import math
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

from pyspark.sql import Row, SparkSession

from spark_integration.queries import QueryDag, QueryNode, node_dataframe


class NodeRunner:
    """Runs nodes of query DAGs against TPC-H tables on one SparkContext."""

    def __init__(self, spark: SparkSession, tables: dict[str, str],
                 tasks_per_executor: int = 2) -> None:
        if tasks_per_executor < 1:
            raise ValueError(f"tasks_per_executor must be >= 1, got {tasks_per_executor}")
        self.spark = spark
        self.tables = tables
        self.tasks_per_executor = tasks_per_executor
        self._sessions: dict[int, SparkSession] = {}
        self._lock = threading.Lock()

    def partitions_for(self, parallelism: int) -> int:
        return max(1, parallelism) * self.tasks_per_executor

    def session_for(self, parallelism: int, partitions: int | None = None) -> SparkSession:
        """The session whose nodes get ``partitions`` partitions (default: by parallelism)."""
        partitions = partitions or self.partitions_for(parallelism)
        with self._lock:
            session = self._sessions.get(partitions)
            if session is None:
                session = self.spark.newSession()
                session.conf.set("spark.sql.shuffle.partitions", str(partitions))
                session.conf.set("spark.sql.files.minPartitionNum", str(partitions))
                session.conf.set("spark.sql.adaptive.coalescePartitions.enabled", "false")
                self._sessions[partitions] = session
            return session

    def run(self, node: QueryNode, parent_paths: dict[str, str], out_path: str | Path,
            parallelism: int, partitions: int | None = None) -> None:
        """Compute ``node`` and write it to ``out_path`` (overwriting a failed attempt), with
        ``partitions`` partitions when given, else as many as ``parallelism`` implies."""
        session = self.session_for(parallelism, partitions)
        frame = node_dataframe(session, node, self.tables, parent_paths)
        frame.write.mode("overwrite").parquet(str(out_path))

    def run_query(self, dag: QueryDag, work_dir: str | Path, parallelism: int = 2) -> list[Row]:
        """Run every node of ``dag`` in topological order and return the sink's rows."""
        paths: dict[str, str] = {}
        for node in dag.nodes:
            out = Path(work_dir) / dag.name / node.name
            self.run(node, {p: paths[p] for p in node.parents}, out, parallelism)
            paths[node.name] = str(out)
        return self.spark.read.parquet(paths[dag.sink.name]).collect()


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal | float):
        return float(value)
    return value


def _sort_key(row: tuple) -> tuple:
    return tuple((0, round(v, 6)) if isinstance(v, float) else (1, str(v)) for v in row)


def rows_match(actual: list[Row], expected: list[Row], rel_tol: float = 1e-6) -> str | None:
    """``None`` when both results hold the same rows (any order, numbers within ``rel_tol``),
    else a description of the first difference."""
    if len(actual) != len(expected):
        return f"row count {len(actual)} != expected {len(expected)}"
    left = sorted((tuple(_canonical(v) for v in r) for r in actual), key=_sort_key)
    right = sorted((tuple(_canonical(v) for v in r) for r in expected), key=_sort_key)
    for index, (a, b) in enumerate(zip(left, right, strict=True)):
        if len(a) != len(b):
            return f"row {index}: {len(a)} columns != expected {len(b)}"
        for x, y in zip(a, b, strict=True):
            if isinstance(x, float) and isinstance(y, float):
                if not math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-9):
                    return f"row {index}: {a} != expected {b}"
            elif x != y:
                return f"row {index}: {a} != expected {b}"
    return None
