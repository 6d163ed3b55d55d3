"""``pipesched/SparkDagShopGraph-v0``: the Spark DAG shop with the whole job graph as Gymnasium
``Graph`` / ``Sequence`` / ``Dict`` spaces (for graph neural networks).

Same simulator, config, generator, timing rules and rewards as
:class:`envs.spark_dag.env.SparkDagShopEnv` in ``observation_mode="graph"``; only the
observation and the action are Gymnasium spaces instead of a :class:`ClusterState` and a
:class:`Decision`. The layout follows spark-sched-sim's idea: one node per stage of every job
in the system, the stage DAG edges, a pointer array from jobs to their node ranges.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.env_config import is_integer, resolve_config
from envs.spark_dag.config import SparkDagShopConfig
from envs.spark_dag.env import SparkDagShopEnv
from envs.spark_dag.generator import Generator
from envs.spark_dag.observation import (
    Decision,
    ObservationLimits,
    critical_path_time_s,
    decision_is_valid,
    task_time_s,
)
from envs.spark_dag.state import ClusterState

NODE_FEATURES = (
    "schedulable", "parents_done", "opened", "log_num_tasks", "unlaunched_fraction",
    "running_fraction", "finished_fraction", "executor_fraction", "log_remaining_network",
    "log_remaining_compute", "log_task_duration", "log_critical_path_time",
    "job_executor_fraction", "job_limit_fraction", "job_free_fraction", "log_job_age",
)
CLUSTER_FEATURES = (
    "free_fraction", "log_jobs_in_system", "network_load", "capacity_per_executor",
    "events_pending", "fair_share_fraction", "log_executors",
)
#: the bound of every feature (Gymnasium warns on infinite Box bounds); features are capped there
FEATURE_MAX = np.float32(1e3)
#: the default bound on stage rows in the system (a 30-job episode of <= 20 stages has 600)
DEFAULT_MAX_NODES = 4096
WAIT = -1


def _log_scaled(values: np.ndarray, scale: float) -> np.ndarray:
    return np.log1p(np.maximum(values, 0.0) / scale)


def node_features(state: ClusterState, limits: ObservationLimits) -> np.ndarray:
    """One row of :data:`NODE_FEATURES` per stage row of ``state``, float32, all >= 0."""
    total = float(state.total_executors)
    num_tasks = np.maximum(state.stage_num_tasks, 1).astype(np.float64)
    job = state.stage_job
    age = state.time_s - state.job_arrival_s
    columns = [
        state.stage_schedulable, state.stage_parents_done, state.stage_opened,
        np.log1p(state.stage_num_tasks),
        state.stage_unlaunched / num_tasks, state.stage_running / num_tasks,
        state.stage_finished / num_tasks, state.stage_executors / total,
        _log_scaled(state.stage_remaining_network_s, limits.work_scale_s),
        _log_scaled(state.stage_remaining_compute_s, limits.work_scale_s),
        _log_scaled(task_time_s(state), limits.task_scale_s),
        _log_scaled(critical_path_time_s(state), limits.task_scale_s),
        state.job_executors[job] / total, state.job_executor_limit[job] / total,
        state.job_free_executors[job] / total, _log_scaled(age[job], limits.time_scale_s),
    ]
    features = np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1)
    return np.minimum(features.reshape(state.num_stages, len(NODE_FEATURES)), FEATURE_MAX
                      ).astype(np.float32)


def cluster_features(state: ClusterState) -> np.ndarray:
    """The :data:`CLUSTER_FEATURES` of ``state``, float32, all >= 0."""
    total = state.total_executors
    return np.minimum(np.array([
        state.free_executors / total, math.log1p(state.num_jobs),
        state.network_flows / state.network_capacity, state.network_capacity / total,
        float(state.events_pending), math.ceil(total / max(state.num_jobs, 1)) / total,
        math.log1p(total) / 5.0,
    ], dtype=np.float32), FEATURE_MAX)


def job_pointers(state: ClusterState) -> np.ndarray:
    """``ptr`` of length ``J + 1``: job ``j``'s nodes are rows ``ptr[j] .. ptr[j + 1] - 1``."""
    return np.searchsorted(state.stage_job, np.arange(state.num_jobs + 1)).astype(np.int64)


def graph_observation_space(num_executors: int, max_nodes: int) -> spaces.Dict:
    """The observation space of :class:`SparkDagShopGraphEnv`."""
    nonnegative = spaces.Box(0.0, FEATURE_MAX, (len(NODE_FEATURES),), np.float32)
    return spaces.Dict({
        "graph": spaces.Graph(node_space=nonnegative, edge_space=spaces.Discrete(1)),
        "job_ptr": spaces.Sequence(spaces.Discrete(max_nodes + 1), stack=True),
        "stage_mask": spaces.Sequence(spaces.Discrete(2), stack=True),
        "job_executors": spaces.Sequence(spaces.Discrete(num_executors + 1), stack=True),
        "free_executors": spaces.Discrete(num_executors + 1),
        "cluster": spaces.Box(0.0, FEATURE_MAX, (len(CLUSTER_FEATURES),), np.float32),
    })


def graph_action_space(num_executors: int, max_nodes: int) -> spaces.Dict:
    """The action space of :class:`SparkDagShopGraphEnv`: a node (or -1, wait) and a limit."""
    return spaces.Dict({"stage_index": spaces.Discrete(max_nodes + 1, start=WAIT),
                        "parallelism": spaces.Discrete(num_executors, start=1)})


class SparkDagShopGraphEnv(SparkDagShopEnv):
    """Schedule Spark job DAGs, seeing every job and stage as one Gymnasium ``Graph``.

    ## Description
    The dynamics, workloads and decision points are those of
    :class:`envs.spark_dag.env.SparkDagShopEnv` (docs/spark_dag.md, "The model"): the same
    :class:`envs.spark_dag.simulator.DagShopSimulator` run by the parent class in its
    ``observation_mode="graph"``, so a graph heuristic's :class:`Decision`, translated by
    :meth:`action_of`, gives the same episode on both. Nothing is hidden: every job in the
    system and every stage of it is a node (no ``max_jobs`` / ``max_stages`` window).

    ## Action Space
    ``Dict(stage_index=Discrete(max_nodes + 1, start=-1), parallelism=Discrete(E, start=1))``:
    ``stage_index`` is a node of the current observation (row of ``graph.nodes``), ``-1``
    waits (``parallelism`` is then ignored); ``parallelism`` caps the stage's job at 1..E
    executors. Valid: a schedulable node, a limit above what its job holds (its entry of
    ``job_executors``), a free executor; waiting is valid while events are pending (the padded
    env's rule). An invalid action is a no-op penalised by ``invalid_action`` and counted in
    ``info["invalid_actions"]``, as in the padded env: the state and the clock do not move.
    ``info["action_mask"]`` and :meth:`action_masks` give Gymnasium's ``Dict`` sample mask
    (``{"stage_index": int8 (max_nodes + 1,), "parallelism": int8 (E,)}``, index 0 of
    ``stage_index`` is wait): ``stage_index`` masks exactly the valid nodes; ``parallelism``
    allows the limits valid for *every* masked node (above the most any job with a schedulable
    node holds; E always is), so ``action_space.sample(mask=info["action_mask"])`` is valid.

    ## Observation Space
    ``Dict``:

    - ``graph``: ``Graph(node_space=Box(0, 1e3, (16,)), edge_space=Discrete(1))``; ``nodes``
      one row per stage row of the :class:`ClusterState` (rows of a job contiguous, jobs in
      arrival order) with :data:`NODE_FEATURES`: schedulable, parents done, opened, log task
      count, unlaunched / running / finished task fractions, stage executors / E, log
      remaining network and compute work, log task duration, log critical-path time, and the
      job's executors / E, limit / E, own free executors / E, log age (logs are
      ``log1p(x / scale)`` with :class:`ObservationLimits`' scales); ``edge_links`` ``(M, 2)``
      ``(parent_node, child_node)`` of the stage DAGs, ``edges`` zeros (no edge features).
    - ``job_ptr``: ``Sequence(Discrete(max_nodes + 1))``, ``J + 1`` entries; job ``j`` owns
      nodes ``job_ptr[j] .. job_ptr[j + 1] - 1``.
    - ``stage_mask``: ``Sequence(Discrete(2))``, 1 per schedulable node.
    - ``job_executors``: ``Sequence(Discrete(E + 1))``, executors each job holds.
    - ``free_executors``: ``Discrete(E + 1)``.
    - ``cluster``: ``Box(0, 1e3, (7,))``, :data:`CLUSTER_FEATURES`.

    Every feature is >= 0 and capped at :data:`FEATURE_MAX` (1e3; the logs stay far below).

    The whole :class:`ClusterState` stays readable as :attr:`state` (what the graph heuristics
    of :mod:`heuristics.spark_dag` act on); it is not put in ``info`` because
    ``gymnasium.utils.env_checker`` compares infos with ``==``, which a state of arrays does
    not answer.

    ## Rewards
    As :class:`SparkDagShopEnv`: ``job_seconds`` (online, -0.01), ``makespan_increase_s``
    (batch, -0.1), ``invalid_action`` (-1 per invalid action); ``reward_weights`` overrides.

    ## Starting State
    A workload from the generator drawn with ``self.np_random``, or
    ``options={"instance": list_of_jobs}``; the first decision point.

    ## Episode End
    Terminated when every job has finished; truncated after ``max_steps`` steps; the final
    ``info`` is :meth:`SparkDagShopEnv.episode_summary` (``mean_jct_s``, ``makespan_s``,
    ``invalid_actions``, ``complete``, ...). A state with more than ``max_nodes`` stage rows
    in the system raises ``ValueError`` naming ``max_nodes``.

    ## Arguments
    ``SparkDagShopGraphEnv(config=None, *, generator=None, render_mode=None,
    max_nodes=4096, **overrides)``: as :class:`SparkDagShopEnv` (a
    :class:`SparkDagShopConfig` and its fields as keyword overrides; its ``observation_mode``
    is set to ``"graph"``, and an override naming another is refused), plus ``max_nodes``, the
    bound on stage rows in the system that sizes ``stage_index`` and ``job_ptr``.

    ## Version History
    * v0: initial version (issue 28 item 5).
    """

    def __init__(self, config: SparkDagShopConfig | None = None, *,
                 generator: Generator | None = None, render_mode: str | None = None,
                 max_nodes: int = DEFAULT_MAX_NODES, **overrides: Any) -> None:
        mode = overrides.pop("observation_mode", "graph")
        if mode != "graph":
            raise ValueError(f"SparkDagShopGraphEnv: observation_mode is always 'graph', got "
                             f"{mode!r}; pipesched/SparkDagShop-v0 has the padded view")
        if not is_integer(max_nodes, 1):
            raise ValueError(f"SparkDagShopGraphEnv: max_nodes must be an integer >= 1, got "
                             f"{max_nodes!r}")
        config = dataclasses.replace(resolve_config(SparkDagShopConfig, config, overrides),
                                     observation_mode="graph")
        super().__init__(config, generator=generator, render_mode=render_mode)
        self.max_nodes = max_nodes
        executors = self.config.num_executors
        self.observation_space = graph_observation_space(executors, max_nodes)
        self.action_space = graph_action_space(executors, max_nodes)

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict]:
        if self.sim is None:
            raise RuntimeError("SparkDagShopGraphEnv.step called before reset")
        decision, valid = self._graph_decision(action)
        if valid or self.sim.done:
            return super().step(decision)  # after the end: the parent counts it as invalid
        return self._refuse()

    def action_of(self, decision: Decision | None) -> dict[str, int]:
        """The action that stands for a graph scheduler's ``decision`` (``None``: wait)."""
        if decision is None:
            return {"stage_index": WAIT, "parallelism": self.config.num_executors}
        state = self.state
        rows = np.flatnonzero((state.stage_job == decision.job_index)
                              & (state.stage_id == decision.stage_id))
        if rows.size != 1:
            raise ValueError(f"SparkDagShopGraphEnv.action_of: job {decision.job_index} has no "
                             f"stage {decision.stage_id} in the current state")
        return {"stage_index": int(rows[0]), "parallelism": int(decision.parallelism)}

    def action_masks(self) -> dict[str, np.ndarray]:
        return self._action_mask()

    # ------------------------------------------------------------------ helpers
    def _graph_decision(self, action: Any) -> tuple[Decision | None, bool]:
        """The decision a ``Dict`` action stands for and whether it is valid now."""
        if self.sim.done or not self.action_space.contains(action):
            return None, False
        state = self.state
        row = int(action["stage_index"])
        if row == WAIT:
            return None, self._wait_is_valid(state)
        if row >= state.num_stages:
            return None, False
        job = int(state.stage_job[row])
        decision = Decision(job_index=job, stage_id=int(state.stage_id[row]),
                            parallelism=int(action["parallelism"]),
                            job_name=state.job_names[job])
        return decision, decision_is_valid(decision, state)

    @staticmethod
    def _wait_is_valid(state: ClusterState) -> bool:
        return bool(state.events_pending) or not state.stage_schedulable.any()

    def _refuse(self) -> tuple[dict[str, Any], float, bool, bool, dict]:
        """An invalid action: a counted, penalised no-op (the padded env's rule)."""
        self.steps += 1
        self.invalid_actions += 1
        terms = {"job_seconds": 0.0, "makespan_increase_s": 0.0, "invalid_action": 1.0}
        reward = float(sum(self.reward_weights[k] * v for k, v in terms.items()))
        truncated = self.steps >= self.config.max_steps
        info = self._info()
        info["reward_terms"] = terms
        if truncated:
            info.update(self.episode_summary())
        return self._observe(), reward, False, truncated, info

    def _action_mask(self) -> dict[str, np.ndarray]:
        state = self.state
        schedulable = state.stage_schedulable & (state.free_executors > 0)
        stage = np.zeros(self.max_nodes + 1, dtype=np.int8)
        stage[0] = self._wait_is_valid(state)
        stage[1:1 + state.num_stages] = schedulable
        held = state.job_executors[state.stage_job[schedulable]]
        most_held = int(held.max()) if held.size else 0
        parallelism = (np.arange(1, state.total_executors + 1) > most_held).astype(np.int8)
        return {"stage_index": stage, "parallelism": parallelism}

    def _observe(self) -> dict[str, Any]:
        state = self.state
        if state.num_stages > self.max_nodes:
            raise ValueError(f"SparkDagShopGraphEnv: {state.num_stages} stage rows in the "
                             f"system > max_nodes={self.max_nodes}; raise max_nodes")
        edge_links = np.array(state.edges, dtype=np.int64).reshape(-1, 2)
        graph = spaces.GraphInstance(nodes=node_features(state, self.limits),
                                     edges=np.zeros(edge_links.shape[0], dtype=np.int64),
                                     edge_links=edge_links)
        return {"graph": graph, "job_ptr": job_pointers(state),
                "stage_mask": (state.stage_schedulable & (state.free_executors > 0)
                               ).astype(np.int64),
                "job_executors": np.array(state.job_executors, dtype=np.int64),
                "free_executors": int(state.free_executors),
                "cluster": cluster_features(state)}

    def _info(self) -> dict[str, Any]:
        info = super()._info()
        info["action_mask"] = self._action_mask()
        return info

