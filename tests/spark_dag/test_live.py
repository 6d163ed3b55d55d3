"""Live mode (envs/spark_dag/live.py): each timing rule on a small instance computed by hand,
and properties on random DAGs (every node runs once, after its parents, never more executors
held than exist, no job faster than its critical path)."""

from __future__ import annotations

import numpy as np
import pytest

from envs.spark_dag import (
    ClusterState,
    Decision,
    Job,
    LiveSimulator,
    NodeJob,
    NodeTiming,
    ObservationLimits,
    Stage,
)

LIMITS = ObservationLimits(max_jobs=4, max_stages=6)


class LowestCap:
    """Launches the first valid (job, stage) at the lowest valid parallelism level; never
    waits while a stage action is valid."""

    def reset(self) -> None:
        pass

    def act(self, observation: dict, mask: np.ndarray) -> int:
        stages = np.flatnonzero(mask[:-1])
        return int(stages[0]) if stages.size else len(mask) - 1


class FullCap(LowestCap):
    """Like :class:`LowestCap` at the highest valid level (cap = E when valid)."""

    def act(self, observation: dict, mask: np.ndarray) -> int:
        stages = np.flatnonzero(mask[:-1])
        if not stages.size:
            return len(mask) - 1
        first = stages[0] // LIMITS.num_levels
        return int(stages[stages // LIMITS.num_levels == first][-1])


class AlwaysWait(LowestCap):
    def act(self, observation: dict, mask: np.ndarray) -> int:
        return len(mask) - 1


class RandomValid(LowestCap):
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, observation: dict, mask: np.ndarray) -> int:
        return int(self.rng.choice(np.flatnonzero(mask)))


class GraphFirst:
    """A graph policy: the first schedulable stage with a fixed limit (``None``: always wait)."""

    observation_mode = "graph"

    def __init__(self, limit: int | None) -> None:
        self.limit = limit

    def reset(self) -> None:
        pass

    def act(self, state: ClusterState, schedulable: np.ndarray) -> Decision | None:
        if self.limit is None:
            return None
        row = int(np.flatnonzero(schedulable)[0])
        job = int(state.stage_job[row])
        return Decision(job, int(state.stage_id[row]), self.limit, state.job_names[job])


def _job(name: str, arrival_s: float, parents: list[tuple[int, ...]],
         timings: list[NodeTiming]) -> NodeJob:
    stages = [Stage(id=i, parents=p, num_tasks=4, compute_s=1.0) for i, p in enumerate(parents)]
    return NodeJob(name, arrival_s, Job(name, arrival_s, stages), tuple(timings))


def test_node_timing_table_and_formula() -> None:
    table = NodeTiming(walls_s={1: 5.0, 3: 2.0})
    assert [table.wall_s(q) for q in (1, 3)] == [5.0, 2.0]
    # a count never recorded is an error naming it, not the nearest count's time
    for q in (2, 4):
        with pytest.raises(ValueError, match=rf"no wall time recorded at {q} executors "
                                             r"\(recorded: \[1, 3\]\)"):
            table.wall_s(q)
    assert table.missing_counts(4) == [2, 4] and table.missing_counts(1) == []
    assert NodeTiming(fixed_s=1.0, work_s=6.0).wall_s(3) == 3.0
    assert NodeTiming(fixed_s=1.0, work_s=6.0).missing_counts(8) == []
    with pytest.raises(ValueError, match="walls_s or fixed_s/work_s"):
        NodeTiming(fixed_s=1.0, walls_s={1: 2.0})
    with pytest.raises(ValueError, match=r"walls_s\[2\] must be finite and >= 0"):
        NodeTiming(walls_s={2: -1.0})
    with pytest.raises(ValueError, match="2 node timings for 1 template stages"):
        _job("a", 0.0, [()], [NodeTiming(1.0), NodeTiming(1.0)])


def test_a_node_holds_its_executors_until_it_ends() -> None:
    # E = 2, full cap: a's node takes both executors for 1 + 4/2 = 3 s (x speed 2 = 6 s); b
    # (arrived at 0) can only start when they come back, then takes 2 s at q = 2
    sim = LiveSimulator(2, LIMITS, speed=2.0)
    run = sim.run([_job("a", 0.0, [()], [NodeTiming(1.0, 4.0)]),
                   _job("b", 0.0, [()], [NodeTiming(walls_s={1: 3.0, 2: 1.0})])], FullCap())
    assert run.jct_s == pytest.approx({"a": 6.0, "b": 8.0})
    assert [(n.job, n.executors, n.launch_s, n.end_s) for n in run.nodes] == \
        [("a", 2, 0.0, 6.0), ("b", 2, 6.0, 8.0)]


def test_running_nodes_share_the_machine() -> None:
    # lowest cap with 2 jobs on E = 2: ceil(0.5 * 2 / 2) = 1 executor each, side by side;
    # contention 1: both at rate 1/2 until a ends (1 s of work: t = 2), then b alone (t = 3)
    jobs = [_job("a", 0.0, [()], [NodeTiming(walls_s={1: 1.0, 2: 0.1})]),
            _job("b", 0.0, [()], [NodeTiming(walls_s={1: 2.0, 2: 0.1})])]
    run = LiveSimulator(2, LIMITS, contention=1.0).run(jobs, LowestCap())
    assert run.jct_s == pytest.approx({"a": 2.0, "b": 3.0})
    assert [n.executors for n in run.nodes] == [1, 1]
    assert LiveSimulator(2, LIMITS).run(jobs, LowestCap()).jct_s == pytest.approx(
        {"a": 1.0, "b": 2.0})


def test_dag_order_arrivals_and_parallel_leaves() -> None:
    # one job, leaves 0 and 1 -> node 2. Full cap: each node holds both executors, so the
    # leaves run one after the other (1 + 2 + 3); lowest caps: the leaves run side by side on
    # one executor each (their q = 1 walls: 2 and 4), then the child on q = 1 (6)
    timings = [NodeTiming(walls_s={1: 2.0, 2: 1.0}), NodeTiming(walls_s={1: 4.0, 2: 2.0}),
               NodeTiming(walls_s={1: 6.0, 2: 3.0})]
    dag = [(), (), (0, 1)]
    assert LiveSimulator(2, LIMITS).run([_job("j", 1.5, dag, timings)], FullCap()).jct_s == \
        pytest.approx({"j": 6.0})
    run = LiveSimulator(2, LIMITS).run([_job("j", 1.5, dag, timings)], LowestCap())
    assert run.jct_s == pytest.approx({"j": 10.0})
    assert [(n.node, n.executors, n.launch_s, n.end_s) for n in run.nodes] == \
        [(0, 1, 1.5, 3.5), (1, 1, 1.5, 5.5), (2, 1, 5.5, 11.5)]


def test_waiting_into_a_deadlock_takes_the_first_valid_action() -> None:
    # nothing runs and nothing will arrive, so the wait is invalid: the first valid action
    # (job 0, node 0, lowest level: cap 1) is launched and the action counted invalid
    run = LiveSimulator(2, LIMITS).run([_job("a", 0.0, [()], [NodeTiming(0.5, 2.0)])],
                                       AlwaysWait())
    assert run.jct_s == pytest.approx({"a": 2.5})
    assert (run.decisions, run.invalid_actions) == (1, 1)


def test_graph_policies_get_the_state_and_answer_decisions() -> None:
    timings = [NodeTiming(walls_s={1: 2.0, 2: 1.0}), NodeTiming(walls_s={1: 4.0, 2: 2.0}),
               NodeTiming(walls_s={1: 6.0, 2: 3.0})]
    dag = [(), (), (0, 1)]
    assert LiveSimulator(2, LIMITS).run([_job("j", 1.5, dag, timings)], GraphFirst(2)).jct_s == \
        {"j": 6.0}
    # limit 1: node 0 on one executor; node 1 at limit 1 while the job holds 1 is invalid
    # (counted; the executor stops deciding) and waits for node 0's end: 2 + 4 + 6
    run = LiveSimulator(2, LIMITS).run([_job("j", 1.5, dag, timings)], GraphFirst(1))
    assert run.jct_s == {"j": 12.0}
    assert (run.decisions, run.invalid_actions) == (4, 1)
    # waiting into a deadlock: the first schedulable stage at limit E (0.5 + 2 / 2)
    run = LiveSimulator(2, LIMITS).run([_job("a", 0.0, [()], [NodeTiming(0.5, 2.0)])],
                                       GraphFirst(None))
    assert run.jct_s == {"a": 1.5} and run.invalid_actions == 1


def test_a_launch_on_an_unrecorded_count_is_an_error_naming_it() -> None:
    # node "b" is recorded at 1 and 2 executors only: a 3-executor run launches it on 3
    recorded = [NodeTiming(walls_s={1: 2.0, 2: 1.0, 3: 0.8}),
                NodeTiming(walls_s={1: 4.0, 2: 2.0})]
    job = _job("j", 0.0, [(), (0,)], recorded)
    job.template.stages[1].name = "b"
    assert LiveSimulator(2, LIMITS).run([job], FullCap()).jct_s == pytest.approx({"j": 3.0})
    with pytest.raises(ValueError, match=r"job 'j' node 'b': launched on 3 executors at 0\.800 s,"
                                         r" a count its trace never recorded \(recorded: \[1, 2\]\)"):
        LiveSimulator(3, LIMITS).run([job], FullCap())


def test_bad_parameters_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="num_executors must be >= 1"):
        LiveSimulator(0, LIMITS)
    with pytest.raises(ValueError, match="speed must be finite and > 0"):
        LiveSimulator(2, LIMITS, speed=0.0)
    with pytest.raises(ValueError, match="contention must be finite and >= 0"):
        LiveSimulator(2, LIMITS, contention=-1.0)
    job = _job("a", 0.0, [()], [NodeTiming(1.0)])
    with pytest.raises(ValueError, match="duplicate job names"):
        LiveSimulator(2, LIMITS).run([job, job], FullCap())


def _random_jobs(rng: np.random.Generator, count: int) -> list[NodeJob]:
    jobs = []
    for j in range(count):
        n = int(rng.integers(1, LIMITS.max_stages + 1))
        parents = [tuple(int(p) for p in np.flatnonzero(rng.random(i) < 0.4)) for i in range(n)]
        stages = [Stage(id=i, parents=parents[i], num_tasks=int(rng.integers(1, 6)),
                        compute_s=rng.uniform(0.1, 2.0, 1)[0]) for i in range(n)]
        arrival = float(round(rng.uniform(0, 5), 3))
        jobs.append(NodeJob.scaled(Job(f"j{j}", arrival, stages), fixed_s=0.2))
    return jobs


@pytest.mark.parametrize("seed", range(6))
def test_properties_on_random_dags(seed: int) -> None:
    rng = np.random.default_rng(seed)
    jobs = _random_jobs(rng, 6)
    executors = int(rng.integers(1, 5))
    run = LiveSimulator(executors, LIMITS, contention=float(rng.uniform(0, 1))).run(
        jobs, RandomValid(seed))
    assert set(run.jct_s) == {job.name for job in jobs}
    by_job = {job.name: job for job in jobs}
    ends: dict[tuple[str, int], float] = {}
    for node in run.nodes:
        assert (node.job, node.node) not in ends  # every node runs once
        ends[(node.job, node.node)] = node.end_s
        assert 1 <= node.executors <= executors
    for node in run.nodes:
        job = by_job[node.job]
        assert node.launch_s >= job.arrival_s - 1e-9
        for parent in job.template.stages[node.node].parents:
            assert node.launch_s >= ends[(node.job, parent)] - 1e-9
    assert len(ends) == sum(len(job.template.stages) for job in jobs)
    instants = sorted({n.launch_s for n in run.nodes})
    for t in instants:  # executors held at every launch instant never exceed E
        assert sum(n.executors for n in run.nodes if n.launch_s <= t < n.end_s) <= executors
    for job in jobs:  # no node beats its alone time at E executors
        fastest = [t.wall_s(executors) for t in job.timings]
        path = [0.0] * len(fastest)
        for i, stage in enumerate(job.template.stages):
            path[i] = fastest[i] + max((path[p] for p in stage.parents), default=0.0)
        assert run.jct_s[job.name] >= max(path) - 1e-9
