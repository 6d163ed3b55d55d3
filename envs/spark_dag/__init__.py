"""Spark DAG-shop scheduling: workloads, simulator and the ``pipesched/SparkDagShop-v0`` env.

The model is documented in :class:`envs.spark_dag.env.SparkDagShopEnv` and docs/spark_dag.md.
"""

from envs.spark_dag.env import SparkDagShopEnv
from envs.spark_dag.generator import Generator, ToyGenerator, TPCHLikeGenerator
from envs.spark_dag.observation import (
    Decision,
    ObservationLimits,
    action_mask,
    decode_action,
    encode_action,
    encode_observation,
    observation_space,
)
from envs.spark_dag.simulator import DagShopSimulator
from envs.spark_dag.state import ClusterState, JobProgress
from envs.spark_dag.workload import (
    ClusterSpec,
    Job,
    Stage,
    WorkloadError,
    jobs_from_json,
    jobs_to_json,
    load_decima_tpch,
    load_workload,
    save_workload,
)

__all__ = [
    "ClusterSpec", "ClusterState", "DagShopSimulator", "Decision", "Generator", "Job",
    "JobProgress", "ObservationLimits", "SparkDagShopEnv", "Stage", "TPCHLikeGenerator",
    "ToyGenerator", "WorkloadError", "action_mask", "decode_action", "encode_action",
    "encode_observation", "jobs_from_json", "jobs_to_json", "load_decima_tpch",
    "load_workload", "observation_space", "save_workload",
]
