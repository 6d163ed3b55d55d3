"""Observation, action mask and action decoding, shared by the env and the live Spark bridge.

All three are pure functions of a :class:`~envs.spark_dag.state.ClusterState` and the padding
limits, so a policy trained in simulation reads and acts on live Spark unchanged.

This is the *padded* view that SB3 policies need: a window of the first ``max_jobs`` jobs in
the system, in arrival order (later ones are counted in the cluster features and become
visible when earlier ones finish), and fair-share parallelism levels. A visible job with more
than ``max_stages`` stages is an error. It decides only what a padded policy can pick; the
heuristics and graph policies read the whole :class:`ClusterState` instead (the env's
``observation_mode="graph"``), where any job, any stage and any limit 1..E can be chosen.

Action space: ``Discrete(max_jobs * max_stages * n_levels + 1)``. Action
``a = (j * max_stages + s) * n_levels + l`` picks stage slot ``s`` of job slot ``j`` with
parallelism level ``l``; the last action ``max_jobs * max_stages * n_levels`` waits.
Level ``l < len(cap_share_multiples)`` caps the job at ``min(E, ceil(m_l * E / J))`` executors
(``m_l`` times the fair share, ``J`` = jobs in the system); the last level caps it at ``E``.
A stage action is valid when there is a free executor, the stage is schedulable
(``ClusterState.stage_schedulable``) and the job holds fewer executors than the cap. Waiting is valid while
``events_pending`` (something runs or a job will arrive) or when no stage action is valid, so a
mask is never all-false.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.spark_dag.state import ClusterState

STAGE_FEATURES = (
    "exists", "runnable", "parents_done", "opened", "log_num_tasks", "waiting_fraction",
    "finished_fraction", "executor_fraction", "log_remaining_network", "log_remaining_compute",
    "network_share", "log_critical_path_time", "log_task_duration",
)
JOB_FEATURES = (
    "exists", "log_age", "executor_fraction", "limit_fraction", "log_remaining_work",
    "network_share", "runnable_stages", "unfinished_stage_fraction",
)
CLUSTER_FEATURES = (
    "free_fraction", "jobs_in_system", "hidden_jobs", "network_load", "capacity_per_executor",
    "events_pending", "fair_share_fraction", "log_executors",
)


@dataclass(frozen=True)
class ObservationLimits:
    """Padding maxima and feature scales of the observation.

    ``max_jobs`` job slots of ``max_stages`` stage slots; ``cap_share_multiples``: the
    parallelism levels as multiples of the fair share (a final "all executors" level is always
    added); ``work_scale_s`` / ``time_scale_s`` / ``task_scale_s``: scales of the
    ``log1p(x / scale)`` features (remaining work, job age, task duration).
    """

    max_jobs: int = 16
    max_stages: int = 20
    cap_share_multiples: tuple[float, ...] = (0.5, 1.0, 2.0)
    work_scale_s: float = 200.0
    time_scale_s: float = 100.0
    task_scale_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_jobs < 1 or self.max_stages < 1:
            raise ValueError(f"ObservationLimits: max_jobs and max_stages must be >= 1, got "
                             f"{self.max_jobs}, {self.max_stages}")
        object.__setattr__(self, "cap_share_multiples",
                           tuple(float(m) for m in self.cap_share_multiples))
        if any(m <= 0 for m in self.cap_share_multiples):
            raise ValueError("ObservationLimits: cap_share_multiples must be > 0")

    @property
    def num_levels(self) -> int:
        return len(self.cap_share_multiples) + 1

    @property
    def num_actions(self) -> int:
        return self.max_jobs * self.max_stages * self.num_levels + 1

    @property
    def wait_action(self) -> int:
        return self.num_actions - 1

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cap_share_multiples"] = list(self.cap_share_multiples)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ObservationLimits:
        return cls(**{**data, "cap_share_multiples": tuple(data.get("cap_share_multiples",
                                                                    (0.5, 1.0, 2.0)))})


@dataclass(frozen=True)
class Decision:
    """Run stage ``stage_id`` of job ``job_index`` (index into the state's job arrays) and cap
    the job at ``parallelism`` executors."""

    job_index: int
    stage_id: int
    parallelism: int
    job_name: str = ""


def decision_is_valid(decision: Any, state: ClusterState) -> bool:
    """A graph decision is valid when it names a schedulable stage of a job in the system, a
    limit within 1..E above what the job holds, and an executor is free (so it commits one)."""
    if not isinstance(decision, Decision) or not 0 <= decision.job_index < state.num_jobs:
        return False
    rows = np.flatnonzero((state.stage_job == decision.job_index)
                          & (state.stage_id == decision.stage_id))
    return (rows.size == 1 and bool(state.stage_schedulable[rows[0]])
            and 1 <= decision.parallelism <= state.total_executors
            and decision.parallelism > state.job_executors[decision.job_index]
            and state.free_executors > 0)


def observation_space(limits: ObservationLimits) -> spaces.Dict:
    J, S = limits.max_jobs, limits.max_stages
    big = np.float32(1e3)
    return spaces.Dict({
        "stage_features": spaces.Box(-big, big, (J, S, len(STAGE_FEATURES)), np.float32),
        "adjacency": spaces.Box(0.0, 1.0, (J, S, S), np.float32),
        "stage_mask": spaces.Box(0.0, 1.0, (J, S), np.float32),
        "job_features": spaces.Box(-big, big, (J, len(JOB_FEATURES)), np.float32),
        "job_mask": spaces.Box(0.0, 1.0, (J,), np.float32),
        "cluster_features": spaces.Box(-big, big, (len(CLUSTER_FEATURES),), np.float32),
    })


def cap_levels(state: ClusterState, limits: ObservationLimits) -> np.ndarray:
    """Executor caps of the parallelism levels in this state, shape ``(num_levels,)``."""
    total = state.total_executors
    jobs = max(state.num_jobs, 1)
    caps = [min(total, math.ceil(m * total / jobs)) for m in limits.cap_share_multiples]
    return np.array([*caps, total], dtype=np.int64)


def _visible_rows(state: ClusterState, limits: ObservationLimits) -> tuple[np.ndarray, np.ndarray]:
    positions = state.stage_positions()
    visible = state.stage_job < limits.max_jobs
    too_deep = visible & (positions >= limits.max_stages)
    if np.any(too_deep):
        job = state.job_names[int(state.stage_job[np.argmax(too_deep)])]
        raise ValueError(f"job {job!r} has more than max_stages={limits.max_stages} stages; "
                         f"raise ObservationLimits.max_stages")
    return np.flatnonzero(visible), positions


def task_time_s(state: ClusterState) -> np.ndarray:
    """Per row: expected duration of one task of an unfinished stage (0 once finished)."""
    unfinished = state.stage_num_tasks - state.stage_finished
    if state.stage_task_s is not None:
        return np.where(unfinished > 0, state.stage_task_s, 0.0)
    work = state.stage_remaining_network_s + state.stage_remaining_compute_s
    return np.divide(work, unfinished, out=np.zeros_like(work), where=unfinished > 0)


def critical_path_time_s(state: ClusterState) -> np.ndarray:
    """Per row: the longest chain of task durations from the stage down to its job's end over
    unfinished stages (the time left with unlimited executors). Edges are relaxed once, by
    increasing parent height, so every child is final before its parents read it."""
    own = task_time_s(state)
    if state.edges.shape[0] == 0:
        return own
    order = np.argsort(state.heights()[state.edges[:, 0]], kind="stable")
    return _relax(own, state.edges[order].tolist())


def _relax(own: np.ndarray, sorted_edges: list[list[int]]) -> np.ndarray:
    path = own.tolist()
    own_list = path.copy()
    for parent, child in sorted_edges:
        candidate = own_list[parent] + path[child]
        if candidate > path[parent]:
            path[parent] = candidate
    return np.array(path)


@dataclass
class _Layout:
    """What only changes when the set of jobs changes; cached on the identity of the state's
    ``edges`` and ``stage_job`` arrays (producers build new arrays when jobs come or go)."""

    edges: np.ndarray
    stage_job: np.ndarray
    limits: ObservationLimits
    rows: np.ndarray
    jobs_of_rows: np.ndarray
    slots: np.ndarray
    adjacency: np.ndarray
    stage_mask: np.ndarray
    sorted_edges: list
    num: np.ndarray
    log_num: np.ndarray
    job_stages: np.ndarray


_LAYOUTS: dict[int, _Layout] = {}


def _layout(state: ClusterState, limits: ObservationLimits) -> _Layout:
    cached = _LAYOUTS.get(id(state.edges))
    if (cached is not None and cached.edges is state.edges and cached.stage_job is state.stage_job
            and cached.limits == limits):
        return cached
    J, S = limits.max_jobs, limits.max_stages
    rows, positions = _visible_rows(state, limits)
    jobs_of_rows = state.stage_job[rows]
    slots = positions[rows]
    adjacency = np.zeros((J, S, S), dtype=np.float32)
    stage_mask = np.zeros((J, S), dtype=np.float32)
    stage_mask[jobs_of_rows, slots] = 1.0
    sorted_edges: list = []
    if state.edges.shape[0]:
        parents, children = state.edges[:, 0], state.edges[:, 1]
        keep = state.stage_job[parents] < J
        adjacency[state.stage_job[parents[keep]], positions[parents[keep]],
                  positions[children[keep]]] = 1.0
        order = np.argsort(state.heights()[parents], kind="stable")
        sorted_edges = state.edges[order].tolist()
    num = state.stage_num_tasks[rows].astype(np.float64)
    n_visible = min(state.num_jobs, J)
    layout = _Layout(edges=state.edges, stage_job=state.stage_job, limits=limits, rows=rows,
                     jobs_of_rows=jobs_of_rows, slots=slots, adjacency=adjacency,
                     stage_mask=stage_mask, sorted_edges=sorted_edges, num=num,
                     log_num=np.log1p(num) / 5.0,
                     job_stages=np.bincount(jobs_of_rows, minlength=n_visible))
    if len(_LAYOUTS) >= 16:
        _LAYOUTS.clear()
    _LAYOUTS[id(state.edges)] = layout
    return layout


_SCALES: dict[ObservationLimits, np.ndarray] = {}


def _inverse_scales(limits: ObservationLimits) -> np.ndarray:
    """Per stage-feature column 8..12: 1 / the scale of its ``log1p(x / scale)``."""
    scales = _SCALES.get(limits)
    if scales is None:
        work, task = 1.0 / limits.work_scale_s, 1.0 / limits.task_scale_s
        scales = _SCALES[limits] = np.array([work, work, 0.0, task, task])
    return scales


def encode_observation(state: ClusterState, limits: ObservationLimits) -> dict[str, np.ndarray]:
    """The padded ``Dict``-of-``Box`` observation of ``state`` (see ``observation_space``)."""
    J, S = limits.max_jobs, limits.max_stages
    total = float(state.total_executors)
    layout = _layout(state, limits)
    rows, jobs_of_rows, slots = layout.rows, layout.jobs_of_rows, layout.slots
    stage = np.zeros((J, S, len(STAGE_FEATURES)), dtype=np.float32)
    job = np.zeros((J, len(JOB_FEATURES)), dtype=np.float32)
    job_mask = np.zeros(J, dtype=np.float32)

    if rows.size:
        own = state.stage_remaining_network_s + state.stage_remaining_compute_s
        net = state.stage_remaining_network_s[rows]
        waiting = state.stage_waiting[rows]
        unfinished = waiting + state.stage_running[rows]
        work = own[rows]
        parents_done = state.stage_parents_done[rows]
        runnable = state.stage_schedulable[rows]
        features = np.empty((rows.size, len(STAGE_FEATURES)), dtype=np.float64)
        features[:, 0] = 1.0
        features[:, 1] = runnable
        features[:, 2] = parents_done
        features[:, 3] = state.stage_opened[rows]
        features[:, 4] = layout.log_num
        features[:, 5] = waiting
        features[:, 6] = state.stage_finished[rows]
        features[:, 5:7] /= layout.num[:, None]
        features[:, 7] = state.stage_executors[rows]
        features[:, 7] /= total
        # columns 8..12 = log1p(x / scale) of network, compute, (share), path, per-task work;
        # the share column is overwritten after the shared log1p
        features[:, 8] = net
        features[:, 9] = state.stage_remaining_compute_s[rows]
        features[:, 10] = 0.0  # np.empty's garbage times the share's 0 scale could be inf * 0
        task_s = task_time_s(state)
        features[:, 11] = (_relax(task_s, layout.sorted_edges)[rows] if layout.sorted_edges
                           else task_s[rows])
        features[:, 12] = task_s[rows]
        tail = features[:, 8:]
        tail *= _inverse_scales(limits)
        np.log1p(tail, out=tail)
        features[:, 10] = 0.0
        np.divide(net, work, out=features[:, 10], where=work > 0)
        stage[jobs_of_rows, slots] = features

        n_visible = min(state.num_jobs, J)
        job_work = np.bincount(jobs_of_rows, weights=work, minlength=n_visible)
        job_net = np.bincount(jobs_of_rows, weights=net, minlength=n_visible)
        columns = job[:n_visible].T  # a view: row k of columns is job feature k
        columns[0] = 1.0
        columns[1] = np.log1p(np.maximum(state.time_s - state.job_arrival_s[:n_visible], 0.0)
                              / limits.time_scale_s)
        columns[2] = state.job_executors[:n_visible] / total
        columns[3] = state.job_executor_limit[:n_visible] / total
        columns[4] = np.log1p(job_work / limits.work_scale_s)
        columns[5] = np.divide(job_net, job_work, out=np.zeros(n_visible), where=job_work > 0)
        columns[6] = np.bincount(jobs_of_rows, weights=runnable, minlength=n_visible) / S
        columns[7] = np.bincount(jobs_of_rows, weights=unfinished > 0, minlength=n_visible) \
            / np.maximum(layout.job_stages, 1)
        job_mask[:n_visible] = 1.0

    jobs_in_system = state.num_jobs
    cluster = np.array([
        state.free_executors / total, jobs_in_system / J, max(jobs_in_system - J, 0) / J,
        state.network_flows / state.network_capacity, state.network_capacity / total,
        float(state.events_pending), math.ceil(total / max(jobs_in_system, 1)) / total,
        math.log1p(total) / 5.0,
    ], dtype=np.float32)
    return {"stage_features": stage, "adjacency": layout.adjacency.copy(),
            "stage_mask": layout.stage_mask.copy(),
            "job_features": job, "job_mask": job_mask, "cluster_features": cluster}


def action_mask(state: ClusterState, limits: ObservationLimits) -> np.ndarray:
    """Boolean mask over ``limits.num_actions`` actions; never all-false."""
    mask = np.zeros(limits.num_actions, dtype=bool)
    if state.free_executors > 0 and state.num_stages:
        layout = _layout(state, limits)
        runnable = state.stage_schedulable[layout.rows]
        if runnable.any():
            jobs = layout.jobs_of_rows[runnable]
            caps = cap_levels(state, limits)
            allowed = caps[None, :] > state.job_executors[jobs][:, None]
            base = (jobs * limits.max_stages + layout.slots[runnable]) * limits.num_levels
            indices = base[:, None] + np.arange(limits.num_levels)[None, :]
            mask[indices[allowed]] = True
    if state.events_pending or not mask.any():
        mask[limits.wait_action] = True
    return mask


def decode_action(action: int, state: ClusterState, limits: ObservationLimits) -> Decision | None:
    """The :class:`Decision` of ``action`` in ``state``; ``None`` for wait and for an action the
    mask forbids (callers check the mask to tell them apart)."""
    action = int(action)
    if not 0 <= action < limits.wait_action:
        return None
    slot, level = divmod(action, limits.num_levels)
    job_index, position = divmod(slot, limits.max_stages)
    if job_index >= state.num_jobs:
        return None
    rows = np.flatnonzero(state.stage_job == job_index)
    if position >= rows.size:
        return None
    row = int(rows[position])
    cap = int(cap_levels(state, limits)[level])
    if (not state.stage_runnable[row] or state.free_executors <= 0
            or cap <= state.job_executors[job_index]):
        return None
    return Decision(job_index=job_index, stage_id=int(state.stage_id[row]), parallelism=cap,
                    job_name=state.job_names[job_index])


def encode_action(job_index: int, position: int, level: int, limits: ObservationLimits) -> int:
    """Inverse of the action layout: job slot, stage slot, level -> action index."""
    return (job_index * limits.max_stages + position) * limits.num_levels + level
