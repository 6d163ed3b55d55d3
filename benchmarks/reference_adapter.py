"""Pipesched's graph schedulers inside the reference simulators (decima-sim, spark-sched-sim).

Imported only by ``benchmarks/decima_driver.py`` and ``benchmarks/sss_driver.py``, which run
in a user's checkout of the reference: an adapter to an external simulator, not pipesched
runtime. At each of the reference's decisions it builds a :class:`ClusterState` from the
reference's own objects, asks the scheduler, and hands the answer back as the reference's own
action. No reference module is imported here: the objects come from the driver.

State, both references:

- jobs: the reference's jobs in the system, in arrival order; rows: every stage of those jobs
  (finished ones too), ``stage_id`` = the reference's node / stage index, parents from its DAG;
- per stage: tasks total, finished, running (launched, unfinished), waiting (not launched);
  ``stage_committed`` = commitments to the stage + executors moving to it (decima-sim's and
  spark-sched-sim's own saturation count); ``stage_executors`` = running + committed;
  ``stage_schedulable`` = the reference's own list (decima-sim's frontier nodes,
  spark-sched-sim's schedulable stages: unsaturated, parents saturated, not yet picked this
  round, and there its job below E executors);
- remaining compute (executor-seconds) = the running tasks' time to their drawn finish + the
  waiting tasks times the stage's expected task duration (``stage_task_s``: decima-sim's
  ``Task.duration`` of the next task, the trace mean until drawn; spark-sched-sim's mean of
  the trace, ``_rough_task_duration``); no network (remaining network 0, capacity E);
- executors: a decision places the reference's *source* executors (decima-sim's
  ``num_source_exec``, spark-sched-sim's committable executors): they are the state's
  ``free_executors``, and the source job's ``job_free_executors``. ``job_executors`` is the
  count the reference's own fair rules read (executors at the job + moving to it + committed
  to it from other jobs), less the source executors for the source job; an executor
  committed away from a running task counts in both jobs, as it does there.

Action: ``Decision(job, stage, limit L)`` commits ``min(source executors, L - job_executors)``
executors to the stage (decima-sim: ``(node, min(unsaturated tasks, that))`` as its
``ActorAgent`` computes it; spark-sched-sim: ``{"stage_idx", "num_exec"}``, which it truncates
to the stage's demand itself). ``None`` leaves the source executors uncommitted, each
reference's "no stage" action. A decision the state does not allow is a :class:`DecisionError`.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.spark_dag.policy import ScoringPolicy, ShapeError, load_policy, validated_executors
from benchmarks.reference_spec import SCHEDULERS, SpecError
from envs.shipped import MODELS_DIR
from envs.spark_dag.observation import Decision, decision_is_valid
from envs.spark_dag.state import ClusterState, JobProgress
from heuristics.spark_dag import HEURISTICS, GraphScheduler, make_heuristic

GraphPolicy = GraphScheduler | ScoringPolicy
#: a relative ``policy:PATH`` is read from the folder holding the shipped ``models/``
POLICY_ROOT = MODELS_DIR.parent


class DecisionError(RuntimeError):
    """A scheduler answered a decision the reference's state does not allow."""


def graph_scheduler(name: str, executors: int, where: str) -> GraphPolicy | None:
    """The pipesched scheduler a spec's ``scheduler`` names (``None`` for the reference's own
    ``fair`` / ``fifo``); :class:`SpecError` for an unknown heuristic or a policy file that
    does not load at ``executors``."""
    if name in SCHEDULERS:
        return None
    kind, _, value = name.partition(":")
    if kind == "heuristic":
        if value not in HEURISTICS:
            raise SpecError(f"{where}: unknown heuristic {value!r} (known: "
                            f"{', '.join(sorted(HEURISTICS))})")
        return make_heuristic(value)
    path = Path(value) if Path(value).is_absolute() else POLICY_ROOT / value
    try:
        return load_policy(path, executors=executors)
    except ShapeError:
        raise SpecError(f"{where}: {path}: validated for executors "
                        f"{validated_executors(path)}, not {executors}") from None
    except ValueError as error:
        raise SpecError(f"{where}: {error}") from None


def graph_schedulers(spec: dict[str, Any], path: str | Path) -> list[GraphPolicy | None]:
    """One entry per run of a checked spec (see :func:`graph_scheduler`)."""
    return [graph_scheduler(run["scheduler"], int(spec["executors"]),
                            f"{path}: runs[{index}].scheduler")
            for index, run in enumerate(spec["runs"])]


@dataclasses.dataclass
class StageView:
    """One stage as the reference holds it, in the units of :class:`ClusterState`."""

    id: int
    parents: list[int]
    num_tasks: int
    finished: int
    running: int
    waiting: int
    committed: int
    remaining_s: float
    task_s: float
    schedulable: bool


class StateBuilder:
    """Collects jobs in arrival order, then builds the :class:`ClusterState`."""

    def __init__(self) -> None:
        self.jobs: list[JobProgress] = []
        self.held: list[int] = []
        self.own: list[int] = []
        self.stages: list[StageView] = []

    def add_job(self, name: str, arrival_s: float, held: int, own: int,
                stages: Sequence[StageView]) -> None:
        self.jobs.append(JobProgress(
            name=name, arrival_s=arrival_s, stage_ids=[s.id for s in stages],
            parents=[s.parents for s in stages], num_tasks=[s.num_tasks for s in stages],
            finished=[s.finished for s in stages], running=[s.running for s in stages],
            waiting=[s.waiting for s in stages],
            remaining_network_s=[0.0] * len(stages),
            remaining_compute_s=[s.remaining_s for s in stages],
            executors=[s.running + s.committed for s in stages],
            opened=[s.finished + s.running + s.committed > 0 for s in stages]))
        self.held.append(max(held, 0))
        self.own.append(own)
        self.stages.extend(stages)

    def build(self, time_s: float, total: int, free: int, events_pending: bool) -> ClusterState:
        state = ClusterState.from_jobs(time_s, total, free, network_capacity=float(total),
                                       network_flows=0, jobs=self.jobs,
                                       events_pending=events_pending)
        return dataclasses.replace(
            state, job_executors=np.array(self.held, dtype=np.int64),
            job_free_executors=np.array(self.own, dtype=np.int64),
            stage_committed=np.array([s.committed for s in self.stages], dtype=np.int64),
            stage_schedulable=np.array([s.schedulable for s in self.stages], dtype=bool),
            stage_task_s=np.array([s.task_s for s in self.stages], dtype=np.float64))


def checked(decision: Decision | None, state: ClusterState,
            scheduler: GraphPolicy) -> Decision | None:
    if decision is not None and not decision_is_valid(decision, state):
        raise DecisionError(f"{scheduler.name}: decision {decision} is not allowed at "
                            f"t={state.time_s:.3f} s ({state.free_executors} source executors)")
    return decision


# decima-sim ------------------------------------------------------------------------------

def decima_job_executors(job_dags: Sequence[Any], exec_commit: Any,
                         moving: Any) -> dict[Any, int]:
    """Executors per job as decima-sim's ``DynamicPartitionAgent`` counts them (its
    ``exec_map``): at the job, moving to it, committed to it from another job or the pool."""
    count = {job: len(job.executors) for job in job_dags}
    for node in moving.moving_executors.values():
        count[node.job_dag] += 1
    for source, targets in exec_commit.commit.items():
        source_job = getattr(source, "job_dag", source)  # a node's job, a job, or None
        for node, amount in targets.items():
            if node is not None and node.job_dag is not source_job:
                count[node.job_dag] += amount
    return count


def decima_stage(node: Any, now_ms: float, frontier: Any, exec_commit: Any,
                 moving: Any) -> StageView:
    waiting = node.num_tasks - node.next_task_idx
    task_ms = float(node.tasks[min(node.next_task_idx, node.num_tasks - 1)].duration)
    running_ms = sum(max(0.0, float(e.task.finish_time) - now_ms) for e in node.executors
                     if e.task is not None and e.task.node is node)
    return StageView(
        id=int(node.idx), parents=[int(p.idx) for p in node.parent_nodes],
        num_tasks=int(node.num_tasks), finished=int(node.num_finished_tasks),
        running=int(node.next_task_idx - node.num_finished_tasks), waiting=int(waiting),
        committed=int(exec_commit.node_commit[node] + moving.count(node)),
        remaining_s=(running_ms + waiting * task_ms) / 1000.0, task_s=task_ms / 1000.0,
        schedulable=node in frontier)


def decima_state(obs: tuple, now_ms: float, total: int,
                 events_pending: bool) -> tuple[ClusterState, list[Any]]:
    """The state of decima-sim's observation and its jobs, in the state's job order."""
    job_dags, source_job, num_source, frontier, _, exec_commit, moving, _ = obs
    held = decima_job_executors(job_dags, exec_commit, moving)
    builder, jobs = StateBuilder(), list(job_dags)
    for job in jobs:
        own = num_source if job is source_job else 0
        builder.add_job(job.name, job.start_time / 1000.0, held[job] - own, own,
                        [decima_stage(n, now_ms, frontier, exec_commit, moving)
                         for n in job.nodes])
    return builder.build(now_ms / 1000.0, total, num_source, events_pending), jobs


def decima_action(decision: Decision | None, state: ClusterState, jobs: list[Any],
                  obs: tuple) -> tuple[Any, int]:
    """``(node, executors to commit)`` for decima-sim's ``Environment.step``."""
    _, _, num_source, _, _, exec_commit, moving, _ = obs
    if decision is None:
        return None, num_source
    node = jobs[decision.job_index].nodes[decision.stage_id]
    unsaturated = (node.num_tasks - node.next_task_idx - exec_commit.node_commit[node]
                   - moving.count(node))
    held = int(state.job_executors[decision.job_index])
    return node, int(min(unsaturated, decision.parallelism - held, num_source))


class DecimaAgent:
    """decima-sim's agent interface, ``get_action(obs) -> (node, limit)``, around a pipesched
    graph scheduler; ``environment`` is the decima-sim ``Environment`` it plays in."""

    def __init__(self, scheduler: GraphPolicy, environment: Any, executors: int) -> None:
        self.scheduler, self.environment, self.executors = scheduler, environment, executors
        scheduler.reset()

    def get_action(self, obs: tuple) -> tuple[Any, int]:
        state, jobs = decima_state(obs, float(self.environment.wall_time.curr_time),
                                   self.executors, len(self.environment.timeline) > 0)
        decision = self.scheduler.act(state, state.stage_schedulable)
        return decima_action(checked(decision, state, self.scheduler), state, jobs, obs)


# spark-sched-sim -------------------------------------------------------------------------

def sss_state(env: Any, finish_ms: dict[int, float],
              task_ms: dict[tuple, float]) -> tuple[ClusterState, list[Any]]:
    """The state of a spark-sched-sim env (``env.unwrapped``) and its jobs in the state's
    order; ``finish_ms``: executor id -> drawn finish of its running task; ``task_ms``: cache
    of each stage's mean trace duration."""
    tracker, now_ms = env.exec_tracker, float(env.wall_time)
    running_ms: dict[tuple, float] = defaultdict(float)
    for executor in env.executors:
        if executor.is_executing:
            key = (executor.task.job_id, executor.task.stage_id)
            running_ms[key] += max(0.0, finish_ms[executor.id_] - now_ms)
    schedulable = set(env.schedulable_stages)
    free, source_job = tracker.num_committable_execs(), tracker.source_job_id()
    builder, jobs = StateBuilder(), [env.jobs[job_id] for job_id in env.active_job_ids]
    for job in jobs:
        stages = []
        for stage in job.stages:
            if stage.pool_key not in task_ms:
                task_ms[stage.pool_key] = float(
                    type(env.data_sampler)._rough_task_duration(stage.task_duration_data))
            mean_ms = task_ms[stage.pool_key]
            stages.append(StageView(
                id=int(stage.id_), parents=[int(p) for p in job.dag.predecessors(stage.id_)],
                num_tasks=int(stage.num_tasks), finished=int(stage.num_completed_tasks),
                running=int(stage.num_executing_tasks), waiting=int(stage.num_remaining_tasks),
                committed=int(tracker.num_commitments_to_stage(stage.pool_key)
                              + tracker.num_executors_moving_to_stage(stage.pool_key)),
                remaining_s=(running_ms[stage.pool_key]
                             + stage.num_remaining_tasks * mean_ms) / 1000.0,
                task_s=mean_ms / 1000.0, schedulable=stage in schedulable))
        own = free if job.id_ == source_job else 0
        builder.add_job(f"job{job.id_}", job.t_arrival / 1000.0,
                        tracker.exec_supply(job.id_) - own, own, stages)
    return builder.build(now_ms / 1000.0, env.num_executors, free, bool(env.event_queue)), jobs


def sss_action(decision: Decision | None, state: ClusterState, jobs: list[Any],
               env: Any) -> dict[str, int]:
    """spark-sched-sim's action dict: the stage's index among its schedulable stages and the
    executors to commit."""
    free = state.free_executors
    if decision is None:
        return {"stage_idx": -1, "num_exec": free}
    stage = jobs[decision.job_index].stages[decision.stage_id]
    held = int(state.job_executors[decision.job_index])
    return {"stage_idx": env.schedulable_stages.index(stage),
            "num_exec": int(min(free, decision.parallelism - held))}


class SssAgent:
    """spark-sched-sim's scheduler interface, ``schedule(obs) -> (action, info)``, around a
    pipesched graph scheduler, reading the env it plays in (``gym.make``'s env, before
    ``reset``). It wraps the env's ``_execute_next_task`` to note each task's drawn finish
    (the duration the env draws there is not kept elsewhere); nothing else changes."""

    def __init__(self, scheduler: GraphPolicy, env: Any) -> None:
        self.scheduler, self.env = scheduler, env.unwrapped
        self.finish_ms: dict[int, float] = {}
        self.task_ms: dict[tuple, float] = {}
        launch = self.env._execute_next_task

        def launch_noting_finish(executor: Any, stage: Any) -> None:
            launch(executor, stage)
            self.finish_ms[executor.id_] = self.env.wall_time + stage.most_recent_duration

        self.env._execute_next_task = launch_noting_finish
        scheduler.reset()

    def schedule(self, obs: dict) -> tuple[dict[str, int], dict]:
        state, jobs = sss_state(self.env, self.finish_ms, self.task_ms)
        decision = self.scheduler.act(state, state.stage_schedulable)
        return sss_action(checked(decision, state, self.scheduler), state, jobs, self.env), {}
