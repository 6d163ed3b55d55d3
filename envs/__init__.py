"""Gymnasium environments of pipesched.

Importing this package registers the ids of the problem table (:mod:`envs.problems`) and
:data:`GRAPH_ENV_IDS` idempotently (Gymnasium 1.x has no plugin entry points), so ``import envs;
gymnasium.make("pipesched/DnnOffload-v0")`` works.
"""

from gymnasium.envs.registration import register, registry

from envs.problems import BY_ENV_ID, PROBLEMS, Problem, problem_for
from envs.scheduler import Scheduler, run_episode

#: env id -> entry point, one per row of the problem table
ENV_IDS: dict[str, str] = {problem.env_id: problem.env_class for problem in PROBLEMS.values()}

#: env id -> entry point of the views outside the problem table (one row per problem): the Spark
#: DAG shop as Gymnasium Graph / Sequence spaces, which mask-based tools (SB3, run_episode) skip
GRAPH_ENV_IDS: dict[str, str] = {
    "pipesched/SparkDagShopGraph-v0": "envs.spark_dag.graph_env:SparkDagShopGraphEnv",
}

for _env_id, _entry_point in {**ENV_IDS, **GRAPH_ENV_IDS}.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry_point)

__all__ = ["BY_ENV_ID", "ENV_IDS", "GRAPH_ENV_IDS", "PROBLEMS", "Problem", "Scheduler",
           "problem_for", "run_episode"]
