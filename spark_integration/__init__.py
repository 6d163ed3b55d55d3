"""Live Apache Spark bridge: a policy that schedules a user's own SQL and DataFrame jobs on a
shared session (PolicyScheduler), TPC-H query DAGs with a node-level DAG executor, a standalone
cluster (on loopback or in network namespaces), settings for any master and event-log trace
extraction (see docs/spark_integration.md)."""

from spark_integration.executor import DagExecutor, JobRecord, NodeRecord, RunResult
from spark_integration.jobs import JobSpec, batch, poisson_stream
from spark_integration.nodes import NodeRunner, rows_match
from spark_integration.policy_scheduler import PolicyScheduler, UserJob
from spark_integration.queries import QUERIES, QueryDag, QueryNode
from spark_integration.session import build_session, wait_for_executors
from spark_integration.tpch import ensure_tpch, table_paths
from spark_integration.tpch_sql import STATEMENTS, register_tables

__all__ = [
    "QUERIES", "STATEMENTS", "DagExecutor", "JobRecord", "JobSpec", "NodeRecord", "NodeRunner",
    "PolicyScheduler", "QueryDag", "QueryNode", "RunResult", "UserJob", "batch",
    "build_session", "ensure_tpch", "poisson_stream", "register_tables", "rows_match",
    "table_paths", "wait_for_executors",
]
