"""Exact solvers (CP-SAT, branch and bound, brute force) for small instances, one module per problem."""

from heuristics.exact.hetero_pipeline import pipeline_optimal
from heuristics.exact.offload import ExactResult, brute_force_optimal, offload_optimal
from heuristics.exact.offload_dag import (
    DagExactResult,
    brute_force_single_job,
    layer_level_optimal,
    offload_dag_optimal,
    single_job_optimal,
    with_partitions,
)
from heuristics.exact.param_server import ParamServerExactResult, param_server_optimal
from heuristics.exact.spark_dag import (
    SparkExactResult,
    spark_makespan_lower_bound,
    spark_optimal_makespan,
)

__all__ = [
    "DagExactResult", "ExactResult", "ParamServerExactResult", "SparkExactResult",
    "brute_force_optimal", "brute_force_single_job", "layer_level_optimal", "offload_dag_optimal",
    "offload_optimal", "param_server_optimal", "pipeline_optimal", "single_job_optimal",
    "spark_makespan_lower_bound", "spark_optimal_makespan", "with_partitions",
]
