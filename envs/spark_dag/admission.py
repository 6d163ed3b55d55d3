"""Node-granular admission: how a scheduler launches whole DAG nodes on a live cluster.

The rules the live Spark executor (:class:`spark_integration.executor.DagExecutor`) applies and
the live mode of the simulator (:mod:`envs.spark_dag.live`) replays, so both ask the scheduler
the same questions and launch the same nodes:

- a job's stages are *nodes* launched whole: once launched, a node counts all its tasks as
  started (none waiting) and cannot be re-parallelised;
- the scheduler sees the :class:`~envs.spark_dag.state.ClusterState` of :func:`live_state`:
  task counts and remaining work come from the job's *template* (a workload
  :class:`~envs.spark_dag.workload.Job` with one stage per node), scaled by the running
  nodes' completed fraction; network capacity is E (no separate network);
- :func:`next_decision` asks the scheduler while a stage action is valid; a valid wait or an
  invalid action stops deciding, except that when waiting would deadlock (nothing runs,
  nothing will arrive) the first valid stage action is taken. A *padded* policy (SB3 agents)
  gets :func:`~envs.spark_dag.observation.encode_observation` and the action mask; a *graph*
  policy (``observation_mode = "graph"``, the heuristics) gets the ClusterState and
  ``stage_schedulable`` and answers a :class:`~envs.spark_dag.observation.Decision` or
  ``None`` (wait), as on the env in ``observation_mode="graph"``;
- a decision ``(job, node, cap)`` sets the job's executor limit to ``cap`` and launches the node
  on ``q = max(1, min(free, cap - held by the job))`` executors (:func:`launch_parallelism`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.scheduler import Scheduler
from envs.spark_dag.observation import (
    Decision,
    ObservationLimits,
    action_mask,
    decision_is_valid,
    decode_action,
    encode_observation,
)
from envs.spark_dag.state import ClusterState, JobProgress
from envs.spark_dag.workload import Job


class AdmissionJob:
    """One job's node bookkeeping during admission: which nodes are launched, running (with the
    executors each holds) and done, and the executor limit of the job's last decision.

    ``parents[i]`` lists the positions of node ``i``'s parents; by default the template's."""

    def __init__(self, name: str, arrival_s: float, template: Job,
                 parents: Sequence[Sequence[int]] | None = None) -> None:
        self.name = name
        self.arrival_s = arrival_s
        self.template = template
        if parents is None:
            position = {stage.id: i for i, stage in enumerate(template.stages)}
            parents = [[position[p] for p in stage.parents] for stage in template.stages]
        self.parents = [list(p) for p in parents]
        self.done: set[int] = set()
        self.running: dict[int, int] = {}  # node position -> executors held
        self.launched: set[int] = set()
        self.executor_limit = 0

    @property
    def num_nodes(self) -> int:
        return len(self.parents)

    def ready(self) -> list[int]:
        """Nodes not launched yet whose parents are all done."""
        return [i for i, parents in enumerate(self.parents) if i not in self.launched
                and all(p in self.done for p in parents)]

    @property
    def held(self) -> int:
        return sum(self.running.values())


def live_state(now_s: float, jobs: Sequence[AdmissionJob], pending: bool, total: int, held: int,
               progress: Callable[[Any, int], float]) -> ClusterState:
    """The SparkDagShop snapshot of node-admitted jobs: a launched node counts all its tasks as
    started; ``progress(job, node)`` (completed fraction of a running node) scales the
    template's task count and remaining work."""
    states = []
    for job in jobs:
        stages = job.template.stages
        num, fin, run, wait, net, comp, exe, opened = ([] for _ in range(8))
        for i in range(job.num_nodes):
            stage = stages[i]
            n = stage.num_tasks
            if i in job.done:
                fraction = 1.0
            elif i in job.running:
                fraction = min(progress(job, i), 0.99)
            else:
                fraction = 0.0
            finished = min(int(fraction * n), n - (0 if i in job.done else 1)) \
                if i in job.launched else 0
            num.append(n)
            fin.append(n if i in job.done else finished)
            run.append(0 if i in job.done or i not in job.launched else n - finished)
            wait.append(0 if i in job.launched else n)
            net.append(float(stage.network_s.sum()) * (1 - fraction))
            comp.append(float(stage.local_s.sum()) * (1 - fraction))
            exe.append(job.running.get(i, 0))
            opened.append(i in job.launched)
        states.append(JobProgress(
            name=job.name, arrival_s=job.arrival_s, stage_ids=list(range(job.num_nodes)),
            parents=job.parents, num_tasks=num, finished=fin, running=run, waiting=wait,
            remaining_network_s=net, remaining_compute_s=comp, executors=exe,
            opened=opened, executor_limit=job.executor_limit))
    return ClusterState.from_jobs(
        time_s=now_s, total_executors=total, free_executors=max(total - held, 0),
        network_capacity=float(total), network_flows=0, jobs=states, events_pending=pending)


@dataclass
class Choice:
    """One scheduler query: ``decision`` to launch (None: stop deciding), whether the scheduler
    was ``asked`` at all and whether its action was ``invalid``."""

    decision: Decision | None
    asked: bool = False
    invalid: bool = False
    act_s: float = 0.0  # wall time of the scheduler's act() call (0 if not asked)


def next_decision(scheduler: Scheduler, state: ClusterState, limits: ObservationLimits) -> Choice:
    """The admission rule: ask ``scheduler`` while a stage action is valid; a valid wait or an
    invalid action (counted) stops deciding, except that when waiting would deadlock (nothing
    runs, nothing will arrive) the first valid action is taken instead (padded: the first
    action of the mask; graph: the first schedulable stage with limit E)."""
    started = time.perf_counter()
    choice = _ask(scheduler, state, limits)
    if choice.asked:
        choice.act_s = time.perf_counter() - started
    return choice


def _ask(scheduler: Scheduler, state: ClusterState, limits: ObservationLimits) -> Choice:
    if getattr(scheduler, "observation_mode", "padded") == "graph":
        return _next_graph_decision(scheduler, state)
    mask = action_mask(state, limits)
    if mask[:-1].sum() == 0:
        return Choice(None)
    action = int(scheduler.act(encode_observation(state, limits), mask))
    valid = 0 <= action < len(mask) and bool(mask[action])
    decision = decode_action(action, state, limits) if valid else None
    if decision is not None:
        return Choice(decision, asked=True)
    if valid and state.events_pending:
        return Choice(None, asked=True)  # a valid wait
    if state.events_pending:
        return Choice(None, asked=True, invalid=True)
    fallback = int(np.flatnonzero(mask[:-1])[0])
    return Choice(decode_action(fallback, state, limits), asked=True, invalid=True)


def _next_graph_decision(scheduler: Scheduler, state: ClusterState) -> Choice:
    schedulable = state.stage_schedulable
    if state.free_executors <= 0 or not schedulable.any():
        return Choice(None)
    decision = scheduler.act(state, schedulable.copy())
    if decision is not None and decision_is_valid(decision, state):
        return Choice(decision, asked=True)
    if decision is None and state.events_pending:
        return Choice(None, asked=True)  # a valid wait
    if state.events_pending:
        return Choice(None, asked=True, invalid=True)
    row = int(np.flatnonzero(schedulable)[0])
    job = int(state.stage_job[row])
    return Choice(Decision(job, int(state.stage_id[row]), state.total_executors,
                           state.job_names[job]), asked=True, invalid=True)


def launch_parallelism(decision: Decision, state: ClusterState, job: AdmissionJob) -> int:
    """Executors a decision's node gets: its cap minus what its job holds, within the free."""
    return max(1, min(state.free_executors, decision.parallelism - job.held))


def admit(scheduler: Scheduler, state: ClusterState, jobs: Sequence[AdmissionJob],
          limits: ObservationLimits) -> tuple[Choice, int]:
    """One query of :func:`next_decision` on ``state`` (built from ``jobs``, in order); for a
    decision, sets its job's executor limit and returns the executors its node gets (else 0).
    Launching the node is the caller's."""
    choice = next_decision(scheduler, state, limits)
    if choice.decision is None:
        return choice, 0
    job = jobs[choice.decision.job_index]
    job.executor_limit = choice.decision.parallelism
    return choice, launch_parallelism(choice.decision, state, job)
