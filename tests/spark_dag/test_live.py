"""Live mode (envs/spark_dag/live.py): each timing rule on a small instance computed by hand
(floors, Spark-FAIR spreading onto idle slots up to the partition count, fractional slots),
and properties on random DAGs (every node runs once, after its parents, floors never above E,
slots between floor and E, no job faster than its critical path)."""

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
from envs.spark_dag.live import PartitionRule, fair_slots

LIMITS = ObservationLimits(max_jobs=4, max_stages=6)
#: every node 8 tasks (the fixed rule at E = 4); the executor's default is 2 q
FIXED8 = PartitionRule(fixed=8)
#: one task per executor held: a node can never spread beyond its floor (the old hard cap)
NO_SPREAD = PartitionRule(tasks_per_executor=1)


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


class GraphLimits(GraphFirst):
    """The first schedulable stage, at the limit given for its job's name."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits

    def act(self, state: ClusterState, schedulable: np.ndarray) -> Decision | None:
        row = int(np.flatnonzero(schedulable)[0])
        job = int(state.stage_job[row])
        name = state.job_names[job]
        return Decision(job, int(state.stage_id[row]), self.limits[name], name)


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


def test_rate_at_fractional_slots_is_the_time_average_of_the_two_counts() -> None:
    table = NodeTiming(walls_s={1: 4.0, 2: 2.0, 3: 1.0})
    assert table.rate(2) == 0.5
    # 1.5 slots: half the time on 1 slot (1/4 per s), half on 2 (1/2 per s)
    assert table.rate(1.5) == pytest.approx(0.375)
    assert table.rate(2.25) == pytest.approx(0.75 * 0.5 + 0.25 * 1.0)
    assert NodeTiming(fixed_s=1.0, work_s=2.0).rate(1.5) == pytest.approx(0.5 / 3 + 0.5 / 2)
    with pytest.raises(ValueError, match=r"no wall time recorded at 3 executors"):
        NodeTiming(walls_s={1: 4.0, 2: 2.0}).rate(2.5)


def test_fair_slots_floors_first_then_water_filling_up_to_the_tasks() -> None:
    # floors fill all 4 slots: nothing to spread, the q = 2 node keeps its 2
    assert fair_slots([1, 1, 2], [8, 8, 8], 4) == [1, 1, 2]
    # the spare slot goes to the node with fewer slots (Spark: running tasks / weight)
    assert fair_slots([2, 1], [8, 8], 4) == [2, 2]
    assert fair_slots([1, 1], [8, 8], 3) == [1.5, 1.5]
    # a node with 1 task cannot take more than 1 slot; the other takes the rest
    assert fair_slots([1, 1], [1, 8], 4) == [1, 3]
    # a lone node with 2 tasks leaves 2 of 4 slots idle
    assert fair_slots([1], [2], 4) == [2]
    # a floor above the task count is the task count
    assert fair_slots([3, 1], [2, 8], 4) == [2, 2]
    with pytest.raises(ValueError, match=r"floors \[3, 2\] exceed the 4 slots"):
        fair_slots([3, 2], [8, 8], 4)


def test_a_node_holds_its_floor_until_it_ends() -> None:
    # E = 2, full cap: a's node takes both executors for 1 + 4/2 = 3 s (x speed 2 = 6 s); b
    # (arrived at 0) can only start when they come back, then takes 2 s at q = 2
    sim = LiveSimulator(2, LIMITS, speed=2.0)
    run = sim.run([_job("a", 0.0, [()], [NodeTiming(1.0, 4.0)]),
                   _job("b", 0.0, [()], [NodeTiming(walls_s={1: 3.0, 2: 1.0})])], FullCap())
    assert run.jct_s == pytest.approx({"a": 6.0, "b": 8.0})
    assert [(n.job, n.executors, n.partitions, n.launch_s, n.end_s) for n in run.nodes] == \
        [("a", 2, 4, 0.0, 6.0), ("b", 2, 4, 6.0, 8.0)]


def test_two_q1_nodes_spread_onto_the_idle_slots() -> None:
    # E = 4, 8 tasks each, floor 1 each: the 2 idle slots go one to each (2 + 2). a: 2 s at
    # rate 1/2 -> ends at 2; b meanwhile makes 2/6 = 1/3; then b alone on 4 slots at rate 1/4
    # needs 8/3 s more -> ends at 2 + 8/3
    jobs = [_job("a", 0.0, [()], [NodeTiming(walls_s={1: 4.0, 2: 2.0, 3: 1.5, 4: 1.0})]),
            _job("b", 0.0, [()], [NodeTiming(walls_s={1: 8.0, 2: 6.0, 3: 5.0, 4: 4.0})])]
    run = LiveSimulator(4, LIMITS, partitions=FIXED8).run(jobs, GraphFirst(1))
    assert run.jct_s == pytest.approx({"a": 2.0, "b": 2.0 + 8.0 / 3.0})
    assert [n.executors for n in run.nodes] == [1, 1]
    assert [n.slot_s for n in run.nodes] == pytest.approx([2 * 2.0, 2 * 2.0 + 4 * 8.0 / 3.0])
    # the hard cap the live mode had before (one task per executor held) keeps them on 1 slot
    assert LiveSimulator(4, LIMITS, partitions=NO_SPREAD).run(jobs, GraphFirst(1)).jct_s == \
        pytest.approx({"a": 4.0, "b": 8.0})


def test_a_lone_q1_node_spreads_as_far_as_its_tasks_go() -> None:
    job = [_job("a", 0.0, [()], [NodeTiming(walls_s={1: 4.0, 2: 2.0, 3: 1.5, 4: 1.0})])]
    # fixed rule, 2 E = 8 tasks: all 4 slots, whatever the floor
    run = LiveSimulator(4, LIMITS, partitions=FIXED8).run(job, GraphFirst(1))
    assert run.jct_s == pytest.approx({"a": 1.0})
    assert (run.nodes[0].executors, run.nodes[0].slot_s) == (1, pytest.approx(4.0))
    # the executor's default, 2 q = 2 tasks: 2 slots at most
    assert LiveSimulator(4, LIMITS).run(job, GraphFirst(1)).jct_s == pytest.approx({"a": 2.0})
    # one task: its floor only
    assert LiveSimulator(4, LIMITS, partitions=NO_SPREAD).run(job, GraphFirst(1)).jct_s == \
        pytest.approx({"a": 4.0})


def test_the_floor_holds_when_a_third_node_arrives() -> None:
    # E = 4, 8 tasks each, perfectly scaling walls (W / s). a and b (floor 1) spread to 2 + 2;
    # at t = 1 c arrives and is admitted at q = 2: floors 1 + 1 + 2 fill the slots, so c runs
    # on 2 (not the 4/3 an even split would give) and a, b drop to 1 each
    linear = {"a": 8.0, "b": 8.0, "c": 4.0}
    jobs = [_job(name, arrival, [()], [NodeTiming(walls_s={s: linear[name] / s
                                                           for s in range(1, 5)})])
            for name, arrival in (("a", 0.0), ("b", 0.0), ("c", 1.0))]
    run = LiveSimulator(4, LIMITS, partitions=FIXED8).run(
        jobs, GraphLimits({"a": 1, "b": 1, "c": 2}))
    # by t = 1 a, b made 2/8 each; c: 2 s at 2/4 per s -> ends at 3 (JCT 2), a, b then at
    # 1/2; a, b: 1/8 per s on 1 slot until 3 (1/2 done), then 2/8 per s on 2: 2 s more
    assert run.jct_s == pytest.approx({"a": 5.0, "b": 5.0, "c": 2.0})
    c = next(n for n in run.nodes if n.job == "c")
    assert (c.executors, c.slot_s / (c.end_s - c.launch_s)) == (2, pytest.approx(2.0))


def test_fractional_slots_on_an_odd_slot_count() -> None:
    # E = 3, two floor-1 nodes: 1.5 slots each. a at (1/4 + 1/2) / 2 = 3/8 per s ends at 8/3;
    # b at (1/12 + 1/6) / 2 = 1/8 per s has 1/3 done, then alone on 3 slots at 1/4 per s
    jobs = [_job("a", 0.0, [()], [NodeTiming(walls_s={1: 4.0, 2: 2.0, 3: 1.0})]),
            _job("b", 0.0, [()], [NodeTiming(walls_s={1: 12.0, 2: 6.0, 3: 4.0})])]
    run = LiveSimulator(3, LIMITS, partitions=PartitionRule(fixed=6)).run(jobs, GraphFirst(1))
    assert run.jct_s == pytest.approx({"a": 8.0 / 3.0, "b": 16.0 / 3.0})


def test_contention_slows_each_running_node_beyond_the_slot_share() -> None:
    # E = 2, lowest cap: q = 1 each, 2 tasks each: 1 slot each. Contention 1: both at half
    # their 1-slot rate until a ends (t = 2, b half done), then b alone spreads to its 2
    # tasks' 2 slots (0.5 of 0.1 s)
    jobs = [_job("a", 0.0, [()], [NodeTiming(walls_s={1: 1.0, 2: 0.1})]),
            _job("b", 0.0, [()], [NodeTiming(walls_s={1: 2.0, 2: 0.1})])]
    run = LiveSimulator(2, LIMITS, contention=1.0).run(jobs, LowestCap())
    assert run.jct_s == pytest.approx({"a": 2.0, "b": 2.05})
    assert [n.executors for n in run.nodes] == [1, 1]
    assert [n.slot_s for n in run.nodes] == pytest.approx([2.0, 2.0 + 2 * 0.05])
    assert LiveSimulator(2, LIMITS).run(jobs, LowestCap()).jct_s == pytest.approx(
        {"a": 1.0, "b": 1.05})


def test_dag_order_arrivals_and_parallel_leaves() -> None:
    # one job, leaves 0 and 1 -> node 2. Full cap: each node's floor is both executors, so
    # the leaves run one after the other (1 + 2 + 3); lowest caps: the leaves run side by side
    # on one slot each (q = 1, rates 1/2 and 1/4); node 0 ends at 2 s, node 1 (half done)
    # spreads to 2 slots (1 s more), then the child alone on 2 slots (3 s)
    timings = [NodeTiming(walls_s={1: 2.0, 2: 1.0}), NodeTiming(walls_s={1: 4.0, 2: 2.0}),
               NodeTiming(walls_s={1: 6.0, 2: 3.0})]
    dag = [(), (), (0, 1)]
    assert LiveSimulator(2, LIMITS).run([_job("j", 1.5, dag, timings)], FullCap()).jct_s == \
        pytest.approx({"j": 6.0})
    run = LiveSimulator(2, LIMITS).run([_job("j", 1.5, dag, timings)], LowestCap())
    assert run.jct_s == pytest.approx({"j": 6.0})
    assert [(n.node, n.executors) for n in run.nodes] == [(0, 1), (1, 1), (2, 1)]
    assert [t for n in run.nodes for t in (n.launch_s, n.end_s)] == \
        pytest.approx([1.5, 3.5, 1.5, 4.5, 4.5, 7.5])
    # without spreading every node stays on its floor: 2 + 4 side by side, then 6
    run = LiveSimulator(2, LIMITS, partitions=NO_SPREAD).run([_job("j", 1.5, dag, timings)],
                                                             LowestCap())
    assert run.jct_s == pytest.approx({"j": 10.0})


def test_waiting_into_a_deadlock_takes_the_first_valid_action() -> None:
    # nothing runs and nothing will arrive, so the wait is invalid: the first valid action
    # (job 0, node 0, lowest level: cap 1) is launched and the action counted invalid; its 2
    # tasks spread to both slots (0.5 + 2 / 2)
    run = LiveSimulator(2, LIMITS).run([_job("a", 0.0, [()], [NodeTiming(0.5, 2.0)])],
                                       AlwaysWait())
    assert run.jct_s == pytest.approx({"a": 1.5})
    assert (run.decisions, run.invalid_actions) == (1, 1)
    assert run.nodes[0].executors == 1


def test_graph_policies_get_the_state_and_answer_decisions() -> None:
    timings = [NodeTiming(walls_s={1: 2.0, 2: 1.0}), NodeTiming(walls_s={1: 4.0, 2: 2.0}),
               NodeTiming(walls_s={1: 6.0, 2: 3.0})]
    dag = [(), (), (0, 1)]
    assert LiveSimulator(2, LIMITS).run([_job("j", 1.5, dag, timings)], GraphFirst(2)).jct_s == \
        {"j": 6.0}
    # limit 1: node 0 on floor 1; node 1 at limit 1 while the job holds 1 is invalid
    # (counted; the executor stops deciding) and waits for node 0's end. Each node alone
    # spreads to both slots: 1 + 2 + 3; without spreading 2 + 4 + 6
    run = LiveSimulator(2, LIMITS).run([_job("j", 1.5, dag, timings)], GraphFirst(1))
    assert run.jct_s == {"j": 6.0}
    assert (run.decisions, run.invalid_actions) == (4, 1)
    run = LiveSimulator(2, LIMITS, partitions=NO_SPREAD).run([_job("j", 1.5, dag, timings)],
                                                             GraphFirst(1))
    assert run.jct_s == {"j": 12.0}
    # waiting into a deadlock: the first schedulable stage at limit E (0.5 + 2 / 2)
    run = LiveSimulator(2, LIMITS).run([_job("a", 0.0, [()], [NodeTiming(0.5, 2.0)])],
                                       GraphFirst(None))
    assert run.jct_s == {"a": 1.5} and run.invalid_actions == 1


def test_a_slot_count_never_recorded_is_an_error_naming_it() -> None:
    # node "b" is recorded at 1 and 2 slots only: a 3-executor run launches it on 3
    recorded = [NodeTiming(walls_s={1: 2.0, 2: 1.0, 3: 0.8}),
                NodeTiming(walls_s={1: 4.0, 2: 2.0})]
    job = _job("j", 0.0, [(), (0,)], recorded)
    job.template.stages[1].name = "b"
    assert LiveSimulator(2, LIMITS).run([job], FullCap()).jct_s == pytest.approx({"j": 3.0})
    with pytest.raises(ValueError, match=r"job 'j' node 'b': runs on 3 slots at 0\.800 s "
                                         r"\(floor 3, 6 tasks\), a count its trace never "
                                         r"recorded .*\(recorded: \[1, 2\]\)"):
        LiveSimulator(3, LIMITS).run([job], FullCap())
    # a floor of 1 the table has, but 2 tasks spread it to 2 slots, which it lacks
    lone = _job("k", 0.0, [()], [NodeTiming(walls_s={1: 4.0})])
    with pytest.raises(ValueError, match=r"job 'k' node 0: runs on 2 slots at 0\.000 s "
                                         r"\(floor 1, 2 tasks\)"):
        LiveSimulator(3, LIMITS).run([lone], GraphFirst(1))


def test_bad_parameters_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="num_executors must be >= 1"):
        LiveSimulator(0, LIMITS)
    with pytest.raises(ValueError, match="speed must be finite and > 0"):
        LiveSimulator(2, LIMITS, speed=0.0)
    with pytest.raises(ValueError, match="contention must be finite and >= 0"):
        LiveSimulator(2, LIMITS, contention=-1.0)
    with pytest.raises(ValueError, match="PartitionRule: fixed must be >= 1, got 0"):
        PartitionRule(fixed=0)
    with pytest.raises(ValueError, match="PartitionRule: tasks_per_executor must be >= 1"):
        PartitionRule(tasks_per_executor=0)
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
    rule = PartitionRule(fixed=int(rng.integers(1, 9)) if seed % 2 else None,
                         tasks_per_executor=int(rng.integers(1, 3)))
    run = LiveSimulator(executors, LIMITS, contention=float(rng.uniform(0, 1)),
                        partitions=rule).run(jobs, RandomValid(seed))
    assert set(run.jct_s) == {job.name for job in jobs}
    by_job = {job.name: job for job in jobs}
    ends: dict[tuple[str, int], float] = {}
    for node in run.nodes:
        assert (node.job, node.node) not in ends  # every node runs once
        ends[(node.job, node.node)] = node.end_s
        assert 1 <= node.executors <= executors
        assert node.partitions == rule.partitions(node.executors)
        if node.end_s > node.launch_s:  # mean slots: at least the floor, at most E and P
            slots = node.slot_s / (node.end_s - node.launch_s)
            assert min(node.executors, node.partitions) - 1e-9 <= slots
            assert slots <= min(executors, node.partitions) + 1e-9
    for node in run.nodes:
        job = by_job[node.job]
        assert node.launch_s >= job.arrival_s - 1e-9
        for parent in job.template.stages[node.node].parents:
            assert node.launch_s >= ends[(node.job, parent)] - 1e-9
    assert len(ends) == sum(len(job.template.stages) for job in jobs)
    instants = sorted({n.launch_s for n in run.nodes})
    for t in instants:  # floors held at every launch instant never exceed E
        assert sum(n.executors for n in run.nodes if n.launch_s <= t < n.end_s) <= executors
    makespan = max(n.end_s for n in run.nodes) - min(n.launch_s for n in run.nodes)
    assert sum(n.slot_s for n in run.nodes) <= executors * makespan + 1e-9
    for job in jobs:  # no node beats its alone time at E executors
        fastest = [t.wall_s(executors) for t in job.timings]
        path = [0.0] * len(fastest)
        for i, stage in enumerate(job.template.stages):
            path[i] = fastest[i] + max((path[p] for p in stage.parents), default=0.0)
        assert run.jct_s[job.name] >= max(path) - 1e-9
