"""``pipesched/SparkDagShop-v0``: online / batch scheduling of Spark job DAGs."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np

from envs.spark_dag.generator import Generator, TPCHLikeGenerator
from envs.spark_dag.observation import (
    ObservationLimits,
    action_mask,
    decode_action,
    encode_observation,
    observation_space,
)
from envs.spark_dag.render import ansi_gantt
from envs.spark_dag.simulator import DagShopSimulator
from envs.spark_dag.workload import ClusterSpec, Job

_REWARD_WEIGHTS = {
    "online": {"job_seconds": -0.01, "makespan_increase_s": 0.0, "invalid_action": -1.0},
    "batch": {"job_seconds": 0.0, "makespan_increase_s": -0.1, "invalid_action": -1.0},
}


class SparkDagShopEnv(gym.Env):
    """Schedule the stages of Spark jobs (DAGs of stages of tasks) on a shared cluster.

    ## Description
    The cluster has ``num_executors`` executors (task slots, E) and a network of capacity
    ``network_capacity`` (C, counted in full-rate network phases). A job is a DAG of stages; a
    stage has ``num_tasks`` tasks and each task, holding one executor from start to end, runs:
    an optional delay, a network phase (shuffle read; ``network_s`` seconds at full per-task
    bandwidth), then compute + write (``compute_s + write_s`` seconds). While ``n`` network
    phases are active, each progresses at rate ``min(1, C / n)`` (processor sharing: the
    network never delivers more than C). The delay is ``warmup_s`` (default 1 s) when the
    executor's previous task was not of this job (its first wave in the job), plus
    ``moving_delay_s`` (default 2 s) when that previous task belonged to another job. A stage
    is runnable when all its parents finished all their tasks.

    An action picks a runnable stage and a parallelism level: the job's executor cap becomes
    ``min(E, ceil(m * E / J))`` for the level's multiple ``m`` of the fair share (``J`` jobs in
    the system; the last level is ``E``), the stage is *opened* and
    ``min(free, cap - held, unstarted tasks)`` of its tasks start at once. An executor that ends
    a task keeps working without a decision on the same stage, then on another opened runnable
    stage of its job, while the job is within its cap; otherwise it becomes free. Decisions
    happen only at events that change the free pool or the runnable set (arrival, an executor
    becoming free, a stage becoming runnable, a job finishing), and only while an executor is
    free and a visible stage is runnable; several decisions may happen at the same instant.

    ``mode="online"``: jobs arrive by a Poisson process (or by the instance's ``arrival_s``);
    objective ``mean_jct_s``. ``mode="batch"``: all jobs at time 0; objective ``makespan_s``.

    ## Action Space
    ``Discrete(max_jobs * max_stages * n_levels + 1)``: action
    ``(j * max_stages + s) * n_levels + l`` = stage slot ``s`` of the ``j``-th job in the system
    (arrival order) at level ``l``; the last action waits until the next decision. See
    :mod:`envs.spark_dag.observation`; ``action_masks()`` and ``info["action_mask"]`` give the
    valid ones.

    ## Observation Space
    ``Dict`` of ``Box`` built only by :func:`envs.spark_dag.observation.encode_observation`:
    ``stage_features (max_jobs, max_stages, 13)`` (exists, runnable, parents done, opened, task
    count, waiting / finished fractions, executors, remaining network and compute work, network
    share, remaining critical-path work, task duration), ``adjacency (max_jobs, max_stages,
    max_stages)`` (parent -> child), ``stage_mask``, ``job_features (max_jobs, 8)``,
    ``job_mask`` and ``cluster_features (8,)``.

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
    ``executor_moves``, ``num_jobs``.

    ## Arguments
    ``config`` (dict) and/or keyword overrides of :meth:`default_config`; ``generator`` (a
    :class:`Generator`, else one built from the config); ``render_mode="ansi"`` (text Gantt).

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    @staticmethod
    def default_config() -> dict[str, Any]:
        return {
            "mode": "online", "num_jobs": 30, "load": 0.85, "network_mix": 0.5,
            "num_executors": 50, "network_capacity": 25.0, "moving_delay_s": 2.0,
            "warmup_s": 1.0, "max_jobs": 16, "max_stages": 20,
            "cap_share_multiples": [0.5, 1.0, 2.0], "reward_weights": None,
            "max_steps": 100_000, "record": False,
        }

    def __init__(self, config: dict[str, Any] | None = None, generator: Generator | None = None,
                 render_mode: str | None = None, **overrides: Any) -> None:
        self.config = self.default_config()
        for source in (config or {}, overrides):
            unknown = set(source) - set(self.config)
            if unknown:
                raise ValueError(f"SparkDagShopEnv: unknown config key(s) {sorted(unknown)}")
            self.config.update(copy.deepcopy(source))
        cfg = self.config
        if cfg["mode"] not in ("online", "batch"):
            raise ValueError(f"SparkDagShopEnv: mode must be 'online' or 'batch', got "
                             f"{cfg['mode']!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"SparkDagShopEnv: render_mode must be None or 'ansi', got "
                             f"{render_mode!r}")
        self.render_mode = render_mode
        self.cluster = ClusterSpec(num_executors=cfg["num_executors"],
                                   network_capacity=float(cfg["network_capacity"]),
                                   moving_delay_s=float(cfg["moving_delay_s"]),
                                   warmup_s=float(cfg["warmup_s"]))
        self.limits = ObservationLimits(max_jobs=cfg["max_jobs"], max_stages=cfg["max_stages"],
                                        cap_share_multiples=tuple(cfg["cap_share_multiples"]))
        weights = dict(_REWARD_WEIGHTS[cfg["mode"]])
        weights.update(cfg["reward_weights"] or {})
        self.reward_weights = weights
        self.generator = generator or TPCHLikeGenerator(
            num_jobs=cfg["num_jobs"], mode=cfg["mode"], load=cfg["load"],
            num_executors=cfg["num_executors"], network_mix=cfg["network_mix"],
            max_stages=min(20, cfg["max_stages"]))
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
        if self.config["mode"] == "batch":
            jobs = [job if job.arrival_s == 0 else job.with_arrival(0.0) for job in jobs]
        for job in jobs:
            if len(job.stages) > self.limits.max_stages:
                raise ValueError(f"job {job.name!r} has {len(job.stages)} stages > max_stages="
                                 f"{self.limits.max_stages}")
        self.jobs = jobs
        self.sim = DagShopSimulator(jobs, self.cluster, record=bool(self.config["record"]))
        self.invalid_actions = 0
        self.decisions = 0
        self.steps = 0
        self._advance()
        return self._observe(), self._info()

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        if self.sim is None:
            raise RuntimeError("SparkDagShopEnv.step called before reset")
        sim = self.sim
        self.steps += 1
        before_seconds, before_time = sim.job_seconds, sim.time_s
        terms = {"job_seconds": 0.0, "makespan_increase_s": 0.0, "invalid_action": 0.0}
        action = int(action)
        if sim.done or not (0 <= action < self.limits.num_actions) or not self._mask[action]:
            self.invalid_actions += 1
            terms["invalid_action"] = 1.0
        else:
            decision = decode_action(action, self._state, self.limits)
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
        truncated = not terminated and self.steps >= self.config["max_steps"]
        info = self._info()
        info["reward_terms"] = terms
        if terminated or truncated:
            info.update(self.episode_summary())
        return self._observe(), reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        return self._mask.copy()

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
            if sim.done:
                self._state = sim.state()
                self._mask = action_mask(self._state, self.limits)
                return
            self._state = sim.state()
            self._mask = action_mask(self._state, self.limits)
            if self._mask[:-1].any():
                return
            sim.wait()  # only hidden jobs (beyond max_jobs) are runnable

    def _observe(self) -> dict[str, np.ndarray]:
        return encode_observation(self._state, self.limits)

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self._mask.copy(), "time_s": self.sim.time_s,
                "invalid_actions": self.invalid_actions, "jobs_done": self.sim.jobs_done}

    def episode_summary(self) -> dict[str, Any]:
        sim = self.sim
        return {"mean_jct_s": sim.mean_jct_s, "makespan_s": sim.makespan_s,
                "invalid_actions": self.invalid_actions, "decisions": self.decisions,
                "executor_moves": sim.moves, "num_jobs": len(sim.jobs),
                "jobs_done": sim.jobs_done, "peak_network_flows": sim.peak_flows}
