"""Live Apache Spark bridge: TPC-H query DAGs, a policy-driven DAG executor, a standalone
cluster (on loopback or in network namespaces), settings for any master and event-log trace
extraction (see docs/spark_integration.md)."""

from spark_integration.executor import DagExecutor, JobRecord, NodeRecord, RunResult
from spark_integration.jobs import JobSpec, batch, poisson_stream
from spark_integration.nodes import NodeRunner, rows_match
from spark_integration.queries import QUERIES, QueryDag, QueryNode
from spark_integration.session import build_session, wait_for_executors
from spark_integration.tpch import ensure_tpch, table_paths

__all__ = [
    "QUERIES", "DagExecutor", "JobRecord", "JobSpec", "NodeRecord", "NodeRunner", "QueryDag",
    "QueryNode", "RunResult", "batch", "build_session", "ensure_tpch", "poisson_stream",
    "rows_match", "table_paths", "wait_for_executors",
]
