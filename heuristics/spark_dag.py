"""Online schedulers for the Spark DAG shop; they read only (observation, action mask).

Because they use nothing but the shared observation (:mod:`envs.spark_dag.observation`), the
same objects drive the simulator and live Spark. Every scheduler picks a valid action; when its
rule wants no stage it waits (if waiting is valid), else it falls back to the first valid one.

Parallelism levels: level ``l`` caps the job at ``min(E, ceil(m_l * E / J))`` executors
(``m_l`` from ``limits.cap_share_multiples``), the last level at ``E``.

- ``fifo``: earliest job with a runnable stage, first runnable stage, all executors.
- ``fair``: the job holding the fewest executors among those below the fair share
  ``ceil(E / J)``, capped at the fair share; waits when every job is at its share.
- ``sjf``: job with the least remaining work, all executors.
- ``srpt``: job with the least remaining processing time, estimated as
  ``max(remaining work / E, remaining critical path of task durations)``, all executors.
- ``critical_path``: the runnable stage (any job) with the most remaining work on its path to
  the job's end, capped at twice the fair share.
- ``weighted_fair``: cap of job ``j`` is ``E * w_j / sum(w)`` with ``w_j = remaining_work^alpha``
  (rounded up to the nearest level); the job furthest below its cap goes first.
  ``alpha = WEIGHTED_FAIR_ALPHA`` (tuned on training workloads by ``benchmarks.spark_dag``).
- ``tetris``: packing score ``demand . available`` over (executor, network) of each runnable
  stage, where demand = (1/E, network share / C per executor) and available = (free / E,
  1 - network load), plus a small shortest-remaining-work bonus; all executors.
- ``contention_free``: see :class:`ContentionFreeScheduler`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property

import numpy as np

from agents.scheduler import Scheduler
from envs.spark_dag.observation import (
    CLUSTER_FEATURES,
    JOB_FEATURES,
    STAGE_FEATURES,
    ObservationLimits,
)

WEIGHTED_FAIR_ALPHA = -0.5  # tuned by benchmarks.spark_dag on training-range workloads
_SF = {name: i for i, name in enumerate(STAGE_FEATURES)}
_JF = {name: i for i, name in enumerate(JOB_FEATURES)}
_CF = {name: i for i, name in enumerate(CLUSTER_FEATURES)}


class View:
    """The decoded observation: cluster numbers, valid (job, stage, level) triples, work.
    Work arrays are decoded lazily (only the rules that need them pay for them)."""

    def __init__(self, limits: ObservationLimits, obs: dict, mask: np.ndarray) -> None:
        self.limits, self.obs, self.mask = limits, obs, mask
        J, S, L = limits.max_jobs, limits.max_stages, limits.num_levels
        cluster = obs["cluster_features"]
        self.executors = int(round(math.expm1(5.0 * float(cluster[_CF["log_executors"]]))))
        self.capacity = float(cluster[_CF["capacity_per_executor"]]) * self.executors
        self.flows = float(cluster[_CF["network_load"]]) * self.capacity
        self.free = int(round(float(cluster[_CF["free_fraction"]]) * self.executors))
        self.jobs_in_system = max(int(round(float(cluster[_CF["jobs_in_system"]]) * J)), 1)
        caps = [min(self.executors, math.ceil(m * self.executors / self.jobs_in_system))
                for m in limits.cap_share_multiples]
        self.caps = np.array([*caps, self.executors])
        self.valid = mask[:-1].reshape(J, S, L)
        self.wait_valid = bool(mask[-1])
        self.stage = obs["stage_features"]
        self.job = obs["job_features"]

    @cached_property
    def runnable(self) -> np.ndarray:
        return self.valid.any(axis=2)

    @cached_property
    def stage_network(self) -> np.ndarray:
        return np.expm1(self.stage[..., _SF["log_remaining_network"]]) * self.limits.work_scale_s

    @cached_property
    def stage_compute(self) -> np.ndarray:
        return np.expm1(self.stage[..., _SF["log_remaining_compute"]]) * self.limits.work_scale_s

    @cached_property
    def stage_path(self) -> np.ndarray:
        return np.expm1(self.stage[..., _SF["log_critical_path"]]) * self.limits.work_scale_s

    @cached_property
    def job_work(self) -> np.ndarray:
        return np.expm1(self.job[:, _JF["log_remaining_work"]]) * self.limits.work_scale_s

    @cached_property
    def job_held(self) -> np.ndarray:
        return np.rint(self.job[:, _JF["executor_fraction"]] * self.executors)

    def action(self, job: int, stage: int, level: int) -> int:
        return (job * self.limits.max_stages + stage) * self.limits.num_levels + level

    def level_at_least(self, job: int, stage: int, executors: float) -> int:
        """Smallest valid level whose cap is >= ``executors``, else the largest valid one."""
        valid = np.flatnonzero(self.valid[job, stage])
        above = valid[self.caps[valid] >= executors]
        return int(above[0] if above.size else valid[-1])

    def first_runnable_stage(self, job: int) -> int:
        return int(np.flatnonzero(self.runnable[job])[0])

    def fallback(self) -> int:
        return int(self.limits.num_actions - 1) if self.wait_valid else int(
            np.flatnonzero(self.mask)[0])

    def grant(self, job: int, stage: int, level: int) -> int:
        """Executors an action would start now: min(free, cap - held, unstarted tasks)."""
        num_tasks = math.expm1(5.0 * float(self.stage[job, stage, _SF["log_num_tasks"]]))
        waiting = round(float(self.stage[job, stage, _SF["waiting_fraction"]]) * num_tasks)
        return int(max(min(self.free, self.caps[level] - self.job_held[job], waiting), 0))


class ObservationScheduler:
    """Base: decode the observation into a :class:`View` and call :meth:`choose`."""

    name = "base"

    def __init__(self, limits: ObservationLimits | None = None) -> None:
        self.limits = limits or ObservationLimits()

    def reset(self) -> None:
        pass

    def act(self, observation: dict, action_mask: np.ndarray) -> int:
        mask = np.asarray(action_mask, dtype=bool)
        if mask.size != self.limits.num_actions:
            raise ValueError(f"{self.name}: mask has {mask.size} actions, limits expect "
                             f"{self.limits.num_actions}; pass the env's ObservationLimits")
        if not mask[:-1].any():
            return int(np.flatnonzero(mask)[0])
        view = View(self.limits, observation, mask)
        action = self.choose(view)
        return int(action) if mask[action] else view.fallback()

    def choose(self, view: View) -> int:
        raise NotImplementedError

    def _level_of_multiple(self, multiple: float) -> int:
        try:
            return self.limits.cap_share_multiples.index(multiple)
        except ValueError:
            raise ValueError(f"{self.name}: needs cap_share_multiples to contain {multiple}, "
                             f"got {self.limits.cap_share_multiples}") from None


class FifoScheduler(ObservationScheduler):
    name = "fifo"

    def choose(self, view: View) -> int:
        job = int(np.flatnonzero(view.runnable.any(axis=1))[0])
        stage = view.first_runnable_stage(job)
        return view.action(job, stage, view.limits.num_levels - 1)


class FairScheduler(ObservationScheduler):
    name = "fair"

    def choose(self, view: View) -> int:
        level = self._level_of_multiple(1.0)
        jobs = np.flatnonzero(view.valid[:, :, level].any(axis=1))
        if jobs.size == 0:
            return view.fallback()
        job = int(jobs[np.argmin(view.job_held[jobs])])
        stage = int(np.flatnonzero(view.valid[job, :, level])[0])
        return view.action(job, stage, level)


class ShortestJobScheduler(ObservationScheduler):
    name = "sjf"

    def job_key(self, view: View) -> np.ndarray:
        return view.job_work

    def choose(self, view: View) -> int:
        jobs = np.flatnonzero(view.runnable.any(axis=1))
        job = int(jobs[np.argmin(self.job_key(view)[jobs])])
        stage = view.first_runnable_stage(job)
        return view.action(job, stage, view.limits.num_levels - 1)


def remaining_path_time_s(view: View) -> np.ndarray:
    """Per job: the longest path of per-task durations over unfinished stages."""
    stage = view.stage
    duration = np.expm1(stage[..., _SF["log_task_duration"]]) * view.limits.task_scale_s
    duration = duration * (stage[..., _SF["finished_fraction"]] < 1) * stage[..., _SF["exists"]]
    adjacency = view.obs["adjacency"]
    path = duration.copy()
    for _ in range(view.limits.max_stages):
        # path[p] = duration[p] + max over children c of path[c]
        downstream = np.max(adjacency * path[:, None, :], axis=2)
        updated = duration + downstream
        if np.allclose(updated, path):
            break
        path = updated
    return path.max(axis=1)


class SrptScheduler(ShortestJobScheduler):
    name = "srpt"

    def job_key(self, view: View) -> np.ndarray:
        return np.maximum(view.job_work / view.executors, remaining_path_time_s(view))


class CriticalPathScheduler(ObservationScheduler):
    name = "critical_path"

    def choose(self, view: View) -> int:
        path = np.where(view.runnable, view.stage_path, -np.inf)
        job, stage = np.unravel_index(int(np.argmax(path)), path.shape)
        level = view.level_at_least(int(job), int(stage), 2 * view.caps[self._level_of_multiple(1.0)])
        return view.action(int(job), int(stage), level)


class WeightedFairScheduler(ObservationScheduler):
    name = "weighted_fair"

    def __init__(self, limits: ObservationLimits | None = None,
                 alpha: float = WEIGHTED_FAIR_ALPHA) -> None:
        super().__init__(limits)
        self.alpha = alpha

    def choose(self, view: View) -> int:
        present = view.job[:, _JF["exists"]] > 0
        weights = np.where(present, np.maximum(view.job_work, 1e-3) ** self.alpha, 0.0)
        hidden = view.jobs_in_system - int(present.sum())
        # jobs beyond the window get the mean weight of the visible ones
        total = weights.sum() + hidden * (weights.sum() / max(int(present.sum()), 1))
        target = view.executors * weights / total
        jobs = np.flatnonzero(view.runnable.any(axis=1))
        deficit = target[jobs] - view.job_held[jobs]
        order = jobs[np.argsort(-deficit, kind="stable")]
        for job in order:
            if target[job] - view.job_held[job] <= 0:
                break
            stage = view.first_runnable_stage(int(job))
            level = view.level_at_least(int(job), stage, math.ceil(target[job]))
            if view.caps[level] > view.job_held[job]:
                return view.action(int(job), stage, level)
        return view.fallback()


class TetrisScheduler(ObservationScheduler):
    name = "tetris"

    def choose(self, view: View) -> int:
        share = view.stage[..., _SF["network_share"]]
        available_net = max(1.0 - view.flows / view.capacity, 0.0)
        align = (1.0 / view.executors) * (view.free / view.executors) + \
            (share / view.capacity) * available_net
        work = view.job_work[:, None]
        bonus = 1.0 / (1.0 + work / view.limits.work_scale_s)
        score = np.where(view.runnable, align / max(align.max(), 1e-12) + 0.1 * bonus, -np.inf)
        job, stage = np.unravel_index(int(np.argmax(score)), score.shape)
        return view.action(int(job), int(stage), view.limits.num_levels - 1)


class ContentionFreeScheduler(ObservationScheduler):
    """The resource-pipeline scheduler: overlap network-heavy with compute-heavy stages.

    Exact rule at each decision (all quantities read from the observation):

    1. Each runnable stage has remaining network work ``a`` and compute work ``b``
       (executor-seconds) and network share ``rho = a / (a + b)``; it is *network-heavy* when
       ``rho > 0.5``, else compute-heavy.
    2. Stages are ordered by Johnson's rule on ``(a, b)`` (network = first machine, compute =
       second): ``a <= b`` first by increasing ``a``, then the rest by decreasing ``b``; ties
       by job slot, then stage slot.
    3. Network demand ``D`` = executors on network-heavy stages (their tasks run in
       synchronised waves, so all of them may read at once) + ``rho`` x executors on the other
       stages; ``C`` is the network capacity.
    4. Jobs below their fair share ``ceil(E / J)`` are visited in fair order (fewest executors
       first). In each, the first stage in Johnson order that is compute-heavy, or
       network-heavy with ``D + g <= network_target * C`` (``g``: executors the action starts,
       ``min(free, cap - held, unstarted tasks)``), is started with the fair-share cap. So a
       network-heavy stage never pushes the network into contention while another job can
       use the free executors for compute.
    5. If no stage qualifies: wait when ``wait_for_network`` (off by default: idle slots cost
       more than contention on the shipped workloads) and waiting is valid; otherwise the
       fair-order job's first Johnson stage. If no job is below its share, act like ``fair``
       (wait, or the first valid action when waiting is not allowed).
    """

    name = "contention_free"

    def __init__(self, limits: ObservationLimits | None = None, network_target: float = 1.0,
                 wait_for_network: bool = False) -> None:
        super().__init__(limits)
        self.network_target = network_target
        self.wait_for_network = wait_for_network

    def johnson_order(self, view: View) -> list[tuple[int, int]]:
        jobs, stages = np.nonzero(view.runnable)
        net = view.stage_network[jobs, stages]
        comp = view.stage_compute[jobs, stages]
        first = net <= comp
        key_group = np.where(first, 0, 1)
        key_value = np.where(first, net, -comp)
        order = np.lexsort((stages, jobs, key_value, key_group))
        return [(int(jobs[i]), int(stages[i])) for i in order]

    def choose(self, view: View) -> int:
        share = view.stage[..., _SF["network_share"]]
        executors = view.stage[..., _SF["executor_fraction"]] * view.executors
        demand = float(np.sum(executors * np.where(share > 0.5, 1.0, share)))
        level = self._level_of_multiple(1.0)
        jobs = np.flatnonzero(view.valid[:, :, level].any(axis=1))
        if jobs.size == 0:
            return view.fallback()
        jobs = jobs[np.argsort(view.job_held[jobs], kind="stable")]
        order = self.johnson_order(view)
        for job in jobs:
            for candidate_job, stage in order:
                if candidate_job != job or not view.valid[job, stage, level]:
                    continue
                if share[job, stage] <= 0.5:
                    return view.action(job, stage, level)
                grant = view.grant(job, stage, level)
                if demand + grant <= self.network_target * view.capacity:
                    return view.action(job, stage, level)
        if view.wait_valid and self.wait_for_network:
            return view.limits.num_actions - 1
        job = int(jobs[0])
        stage = next(s for j, s in order if j == job and view.valid[job, s, level])
        return view.action(job, stage, level)


HEURISTICS: dict[str, Callable[[], Scheduler]] = {
    "fifo": FifoScheduler,
    "fair": FairScheduler,
    "sjf": ShortestJobScheduler,
    "srpt": SrptScheduler,
    "critical_path": CriticalPathScheduler,
    "weighted_fair": WeightedFairScheduler,
    "tetris": TetrisScheduler,
    "contention_free": ContentionFreeScheduler,
}


def make_heuristic(name: str, limits: ObservationLimits | None = None) -> ObservationScheduler:
    """A heuristic by name, for an env with these observation limits."""
    if name not in HEURISTICS:
        raise KeyError(f"unknown Spark heuristic {name!r}; known: {sorted(HEURISTICS)}")
    return HEURISTICS[name](limits)
