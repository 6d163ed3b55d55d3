"""``pipesched/SparkDagShop-v0``: online / batch scheduling of Spark job DAGs."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.env_config import check_generator, check_render_mode, resolve_config
from envs.spark_dag.config import SparkDagShopConfig
from envs.spark_dag.generator import Generator
from envs.spark_dag.observation import (
    Decision,
    ObservationLimits,
    action_mask,
    decision_is_valid,
    decode_action,
    encode_observation,
    observation_space,
)
from envs.spark_dag.render import ansi_gantt
from envs.spark_dag.simulator import DagShopSimulator
from envs.spark_dag.state import ClusterState
from envs.spark_dag.workload import Job


class ClusterStateSpace(gym.spaces.Space):
    """Observation space of ``observation_mode="graph"``: a whole :class:`ClusterState`."""

    def __init__(self) -> None:
        super().__init__(shape=None, dtype=None)

    def contains(self, x: Any) -> bool:
        return isinstance(x, ClusterState)

    def sample(self, mask: Any = None, probability: Any = None) -> ClusterState:
        raise NotImplementedError("a ClusterState comes from the simulator, not from sampling")


class DecisionSpace(gym.spaces.Space):
    """Action space of ``observation_mode="graph"``: a :class:`Decision` or ``None`` (wait)."""

    def __init__(self, num_executors: int) -> None:
        super().__init__(shape=None, dtype=None)
        self.num_executors = num_executors

    def contains(self, x: Any) -> bool:
        return x is None or (isinstance(x, Decision) and 1 <= x.parallelism <= self.num_executors)

    def sample(self, mask: Any = None, probability: Any = None) -> None:
        return None


class SparkDagShopEnv(gym.Env):
    """Schedule the stages of Spark jobs (DAGs of stages of tasks) on a shared cluster.

    ## Description
    The cluster has ``num_executors`` executors (task slots, E) and a network of capacity
    ``network_capacity`` (C, counted in full-rate network phases). A job is a DAG of stages; a
    stage has ``num_tasks`` tasks and each task holds one executor for its whole duration: a
    network phase (shuffle read), then compute + write. While ``n`` network phases are active,
    each progresses at rate ``min(1, C / n)`` (processor sharing). The timing rules are those of
    decima-sim and spark-sched-sim by default; each is a config key (``ClusterSpec.legacy()``
    gives the older rules; :mod:`envs.spark_dag.simulator` states them exactly):

    - ``duration_model="waves"``: a stage with measured waves (Decima's TPC-H traces, our
      real-Spark traces) draws each task's duration at its start, with ``self.np_random``, from
      the entry nearest the job's current executor count, by wave: ``fresh`` (the executor's
      first task in the job), ``first_wave`` (first task in this stage), ``rest_wave``;
      ``"fixed"``: the per-task arrays, plus ``warmup_s`` on a first task in the job and
      (``warmup_scope="stage"``) in each new stage.
    - ``moving_delay_s`` whenever an executor changes owner, leaving the shared pool included
      (``move_from_pool``). Executors start in the pool and return to it when their job has no
      task left to launch.
    - ``commit_when="parents_launched"``: a stage may receive executors once its parents have
      launched all their tasks; they wait inside the job until the parents finish (Spark).
    - A decision picks a schedulable stage and a parallelism limit (1..E) for its job: the stage
      is *opened* and ``min(free, limit - held, tasks not launched)`` free executors are
      committed to it. An executor that ends a task keeps working without a decision on the
      same stage, then on another opened schedulable stage of its job, while the job is within
      its limit; otherwise it becomes free. Decisions happen only at events that change the free
      executors or the schedulable set, and only while an executor is free and a stage is
      schedulable; several may happen at the same instant.

    ``mode="online"``: jobs arrive by a Poisson process (or by the instance's ``arrival_s``);
    objective ``mean_jct_s``. ``mode="batch"``: all jobs at time 0; objective ``makespan_s``.

    ## Action Space
    ``observation_mode="graph"``: a :class:`Decision` (job index, stage id, limit 1..E) or
    ``None`` to wait; any job in the system and any stage (no window). ``info["action_mask"]``
    holds ``state.stage_schedulable`` (one flag per stage row).
    ``observation_mode="padded"`` (default; for SB3): ``Discrete(max_jobs * max_stages *
    n_levels + 1)``: action ``(j * max_stages + s) * n_levels + l`` = stage slot ``s`` of the
    ``j``-th job in the system (arrival order) at level ``l`` (limit ``ceil(m_l * E / J)``, the
    last level E); the last action waits. ``action_masks()`` and ``info["action_mask"]`` give
    the valid ones. The padded window shows the first ``max_jobs`` jobs only; jobs beyond it
    still run on executors the policy already gave them.

    ## Observation Space
    ``"graph"``: the :class:`ClusterState` itself (every job and stage in the system).
    ``"padded"``: ``Dict`` of ``Box`` built only by
    :func:`envs.spark_dag.observation.encode_observation`: ``stage_features (max_jobs,
    max_stages, 13)`` (exists, schedulable, parents done, opened, task count, waiting /
    finished fractions, executors, remaining network and compute work, network share, critical
    path time, task duration), ``adjacency (max_jobs, max_stages, max_stages)`` (parent ->
    child), ``stage_mask``, ``job_features (max_jobs, 8)``, ``job_mask`` and
    ``cluster_features (8,)``.

    ## Rewards
    Named terms times ``reward_weights``: ``job_seconds`` (integral of the number of jobs in the
    system over the step; online default weight -0.01, so the return is -0.01 * sum of JCTs),
    ``makespan_increase_s`` (time advanced while jobs remain; batch default weight -0.1, so the
    return is -0.1 * makespan) and ``invalid_action`` (-1 per masked action, which is a no-op).

    ## Starting State
    A workload from the generator (default :class:`TPCHLikeGenerator`) drawn with
    ``self.np_random``, or ``options={"instance": list_of_jobs}``; the first decision point.

    ## Episode End
    Terminated when every job has finished; truncated after ``max_steps`` steps. The final
    ``info`` holds ``mean_jct_s``, ``makespan_s``, ``invalid_actions``, ``decisions``,
    ``executor_moves``, ``num_jobs``, ``jobs_done`` and ``complete`` (False after a
    truncation: ``mean_jct_s`` then covers the finished jobs only).

    ## Arguments
    ``SparkDagShopEnv(config=None, *, generator=None, render_mode=None, **overrides)``:
    ``config`` a :class:`envs.spark_dag.config.SparkDagShopConfig` (default
    ``SparkDagShopConfig()``) whose fields ``overrides`` replace by name (``mode``,
    ``num_executors``, ``observation_mode``, ...; an unknown name is refused); ``generator`` a
    :class:`Generator` (``rng -> list[Job]``) that replaces the config's
    :class:`TPCHLikeGenerator`; ``render_mode="ansi"`` (text Gantt).

    ## Version History
    * v0: initial version; reference timing rules (waves, moves from the pool, commitment
      before parents finish, limits 1..E) and ``observation_mode="graph"`` added in place, the
      older rules kept as config values.
    * v0 (same dynamics): settings moved into the frozen ``SparkDagShopConfig`` with keyword overrides.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, config: SparkDagShopConfig | None = None, *,
                 generator: Generator | None = None, render_mode: str | None = None,
                 **overrides: Any) -> None:
        self.config = resolve_config(SparkDagShopConfig, config, overrides)
        check_generator(type(self).__name__, generator)
        check_render_mode(type(self).__name__, self.metadata["render_modes"], render_mode)
        self.render_mode = render_mode
        self.graph = self.config.observation_mode == "graph"
        self.cluster = self.config.cluster
        self.limits: ObservationLimits = self.config.limits
        self.reward_weights = self.config.weights
        self.generator = generator if generator is not None else self.config.default_generator()
        if self.graph:
            self.observation_space = ClusterStateSpace()
            self.action_space = DecisionSpace(self.config.num_executors)
        else:
            self.observation_space = observation_space(self.limits)
            self.action_space = gym.spaces.Discrete(self.limits.num_actions)
        self.sim: DagShopSimulator | None = None
        self._state = None
        self._mask = np.zeros(self.limits.num_actions, dtype=bool)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        jobs = (options or {}).get("instance")
        if jobs is None:
            jobs = self.generator(self.np_random)
        jobs = list(jobs)
        if not jobs or not all(isinstance(job, Job) for job in jobs):
            raise ValueError("SparkDagShopEnv.reset: options['instance'] must be a non-empty "
                             "list of envs.spark_dag.Job")
        if self.config.mode == "batch":
            jobs = [job if job.arrival_s == 0 else job.with_arrival(0.0) for job in jobs]
        if not self.graph:
            for job in jobs:
                if len(job.stages) > self.limits.max_stages:
                    raise ValueError(f"job {job.name!r} has {len(job.stages)} stages > "
                                     f"max_stages={self.limits.max_stages} (the padded view's "
                                     f"limit; observation_mode='graph' has none)")
        self.jobs = jobs
        self.sim = DagShopSimulator(jobs, self.cluster, record=self.config.record,
                                    rng=self.np_random)
        self.invalid_actions = 0
        self.decisions = 0
        self.steps = 0
        self._advance()
        return self._observe(), self._info()

    def step(self, action: int | Decision | None
             ) -> tuple[Any, float, bool, bool, dict]:
        if self.sim is None:
            raise RuntimeError("SparkDagShopEnv.step called before reset")
        sim = self.sim
        self.steps += 1
        before_seconds, before_time = sim.job_seconds, sim.time_s
        terms = {"job_seconds": 0.0, "makespan_increase_s": 0.0, "invalid_action": 0.0}
        decision, valid = self._decision_of(action)
        if not valid:
            self.invalid_actions += 1
            terms["invalid_action"] = 1.0
            if self.graph and not sim.done:
                sim.wait()  # a graph action cannot be masked: an invalid one waits
                self._advance()
        else:
            if decision is None:
                sim.wait()
            else:
                self.decisions += 1
                sim.apply(sim.global_stage(decision.job_index, decision.stage_id),
                          decision.parallelism)
            self._advance()
        terms["job_seconds"] = sim.job_seconds - before_seconds
        terms["makespan_increase_s"] = sim.time_s - before_time
        reward = float(sum(self.reward_weights[k] * v for k, v in terms.items()))
        terminated = sim.done
        truncated = not terminated and self.steps >= self.config.max_steps
        info = self._info()
        info["reward_terms"] = terms
        if terminated or truncated:
            info.update(self.episode_summary())
        return self._observe(), reward, terminated, truncated, info

    def _decision_of(self, action: Any) -> tuple[Decision | None, bool]:
        """The decision an action stands for and whether it is valid now."""
        sim = self.sim
        if sim.done:
            return None, False
        if not self.graph:
            action = int(action)
            if not (0 <= action < self.limits.num_actions) or not self._mask[action]:
                return None, False
            return decode_action(action, self._state, self.limits), True
        if action is None:
            return None, True
        return action, decision_is_valid(action, self._state)

    def action_masks(self) -> np.ndarray:
        return self._mask.copy()

    @property
    def state(self) -> ClusterState:
        """The whole current :class:`ClusterState` (what graph schedulers read)."""
        if self._state is None:
            raise RuntimeError("SparkDagShopEnv.state read before reset")
        return self._state

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.sim is None:
            return None
        return ansi_gantt(self.sim)

    # ------------------------------------------------------------------ helpers
    def _advance(self) -> None:
        """Run the simulator to the next instant where some stage action is valid."""
        sim = self.sim
        while True:
            sim.run_until_decision()
            self._state = sim.state()
            if self.graph:
                self._mask = self._state.stage_schedulable
                return
            self._mask = action_mask(self._state, self.limits)
            if sim.done or self._mask[:-1].any():
                return
            sim.wait()  # only jobs beyond the padded window are schedulable

    def _observe(self) -> Any:
        if self.graph:
            return self._state
        return encode_observation(self._state, self.limits)

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self._mask.copy(), "time_s": self.sim.time_s,
                "invalid_actions": self.invalid_actions, "jobs_done": self.sim.jobs_done}

    def episode_summary(self) -> dict[str, Any]:
        sim = self.sim
        return {"mean_jct_s": sim.mean_jct_s, "makespan_s": sim.makespan_s,
                "invalid_actions": self.invalid_actions, "decisions": self.decisions,
                "executor_moves": sim.moves, "num_jobs": len(sim.jobs),
                "jobs_done": sim.jobs_done, "peak_network_flows": sim.peak_flows,
                "complete": sim.done}
