"""Spark DAG-shop scheduling: workloads, simulator, the ``pipesched/SparkDagShop-v0`` env and its
Gymnasium-graph view ``pipesched/SparkDagShopGraph-v0``.

The model is documented in :class:`envs.spark_dag.env.SparkDagShopEnv` and docs/spark_dag.md.
"""

from envs.spark_dag.config import SparkDagShopConfig
from envs.spark_dag.env import SparkDagShopEnv
from envs.spark_dag.generator import (
    Generator,
    ToyGenerator,
    TPCHLikeGenerator,
    TraceSequenceGenerator,
)
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
    Waves,
    WorkloadError,
    jobs_from_json,
    jobs_to_json,
    load_decima_tpch,
    load_wave_traces,
    load_workload,
    save_workload,
    scale_network,
)

__all__ = [
    "ClusterSpec", "ClusterState", "DagShopSimulator", "Decision", "Generator", "Job",
    "JobProgress", "ObservationLimits", "SparkDagShopConfig", "SparkDagShopEnv", "Stage", "TPCHLikeGenerator",
    "ToyGenerator", "TraceSequenceGenerator", "Waves", "WorkloadError", "action_mask",
    "decode_action", "encode_action",
    "encode_observation", "jobs_from_json", "jobs_to_json", "load_decima_tpch", "load_wave_traces",
    "scale_network",
    "load_workload", "observation_space", "save_workload",
]

# the live mode: nodes admitted whole, as a live Spark runs them (envs/spark_dag/live.py)
from envs.spark_dag.graph_env import SparkDagShopGraphEnv  # noqa: E402
from envs.spark_dag.live import LiveRun, LiveSimulator, NodeJob, NodeRun, NodeTiming  # noqa: E402
from envs.spark_dag.live_generator import (  # noqa: E402
    LiveSequenceGenerator,
    load_live_templates,
    recorded_executors,
)

__all__ += ["SparkDagShopGraphEnv", "LiveRun", "LiveSequenceGenerator", "LiveSimulator", "NodeJob", "NodeRun",
            "NodeTiming", "load_live_templates", "recorded_executors"]
