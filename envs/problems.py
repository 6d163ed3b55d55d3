"""The one table of pipesched's problems: what every CLI, benchmark, chart and bridge reads.

Each row names its parts by import path (``"module:attribute"``), so this module sits at the
bottom of the layers and imports nothing above it; :meth:`Problem.load` resolves a part when a
caller from a higher layer asks for it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One scheduling problem.

    ``config`` is the env's frozen config dataclass (``Env(config, **overrides)``);
    ``heuristics`` is a ``dict[str, planner]`` (whole-instance problems) or ``dict[str, factory
    of Scheduler]`` (Spark); ``exact`` the exact solver for small instances; ``agent`` the
    shipped agent's file under ``models/`` and ``agent_loader`` the function that turns that
    file into a planner (``.plan(instance)``) or a Scheduler; ``algo`` the ``algo:`` of its
    entry in ``agents/configs/<name>.yaml``, which trains the shipped agent; ``simulate`` scores
    a whole plan, ``simulate(instance, plan).<objective>`` (empty for the online Spark problem,
    whose objective only an episode yields)."""

    name: str
    env_id: str
    env_class: str
    config: str
    objective: str
    heuristics: str
    exact: str
    agent: str
    agent_loader: str
    algo: str
    simulate: str = ""

    def load(self, part: str) -> Any:
        """Import the object a field names, e.g. ``problem.load("heuristics")``."""
        module, _, attribute = getattr(self, part).partition(":")
        return getattr(importlib.import_module(module), attribute)


PROBLEMS: dict[str, Problem] = {problem.name: problem for problem in (
    Problem("offload", "pipesched/DnnOffload-v0", "envs.offload.env:DnnOffloadEnv",
            "envs.offload.config:OffloadConfig", "makespan_s", "heuristics.offload:HEURISTICS",
            "heuristics.exact:offload_optimal",
            "offload_agent.zip", "agents.scheduler:load_scheduler", "maskable_ppo",
            "envs.offload:simulate"),
    Problem("param_server", "pipesched/ParamServer-v0", "envs.param_server.env:ParamServerEnv",
            "envs.param_server.config:ParamServerConfig", "iteration_s",
            "heuristics.param_server:HEURISTICS",
            "heuristics.exact:param_server_optimal", "param_server_agent.ranker.json",
            "agents.param_server.agent:load_agent", "listwise",
            "envs.param_server.simulator:evaluate"),
    Problem("spark_dag", "pipesched/SparkDagShop-v0", "envs.spark_dag.env:SparkDagShopEnv",
            "envs.spark_dag.config:SparkDagShopConfig", "mean_jct_s",
            "heuristics.spark_dag:HEURISTICS",
            "heuristics.exact:spark_optimal_makespan", "spark_dag_policy.json",
            "agents.spark_dag.policy:load_policy", "cmaes"),
    Problem("hetero_pipeline", "pipesched/HeteroPipeline-v0",
            "envs.hetero_pipeline.env:HeteroPipelineEnv",
            "envs.hetero_pipeline.config:HeteroPipelineConfig", "iteration_s",
            "heuristics.hetero_pipeline:HEURISTICS", "heuristics.exact:pipeline_optimal",
            "hetero_pipeline_agent.ranker.json", "agents.hetero_pipeline.agent:load_agent",
            "listwise", "envs.hetero_pipeline.simulator:simulate"),
)}
BY_ENV_ID: dict[str, Problem] = {problem.env_id: problem for problem in PROBLEMS.values()}


def problem_for(env_id: str) -> Problem:
    """The row of ``env_id``; an unknown id is refused by name."""
    try:
        return BY_ENV_ID[env_id]
    except KeyError:
        raise ValueError(f"unknown env id {env_id!r}; known: {', '.join(sorted(BY_ENV_ID))}"
                         ) from None
