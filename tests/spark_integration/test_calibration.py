"""The executor model (spark_integration/calibration.py): ``predict_live`` is the simulator's
live mode, whose rule without spreading (one task per executor held) reproduces on recorded
live runs the predictions of its earlier stand-alone hard-cap implementation; the admission
and partition rules on hand-computed cases; the fit of speed and contention on the slots the
rule gives each measured node; and, on the tests' real local[2] session, that
:func:`slots_held` leaves a timed job only the other slots."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from envs.spark_dag import ClusterState, Decision, Job, ObservationLimits, Stage, jobs_from_json
from envs.spark_dag.live import PartitionRule
from heuristics.spark_dag import make_heuristic
from spark_integration.calibration import (
    LiveModel,
    NodeTimes,
    compare,
    fit_live_model,
    node_samples,
    pace_of,
    predict_live,
    slots_held,
    summarize,
    workload_for,
)
from spark_integration.executor import JobRecord, NodeRecord, RunResult, structure_template
from spark_integration.jobs import JobSpec
from spark_integration.queries import QUERIES

LIMITS = ObservationLimits()
#: one task per executor held: no node runs beyond its floor (the hard cap of cdf3bed)
NO_SPREAD = PartitionRule(tasks_per_executor=1)
# one local[2] and one standalone session (8 TPC-H jobs, one run per pipesched driver), with
# the predictions of predict_live at commit cdf3bed, before it became a call into
# envs/spark_dag/live.py; written by fixtures/record_live_runs.py
RECORDED = sorted((Path(__file__).parent / "fixtures").glob("live_runs_*.json"))


class Replay:
    """Plays back the answers a scheduler gave when the prediction was recorded (padded action
    indices, or graph decisions ``[job_index, stage_id, parallelism]`` / ``None``), so the
    check does not depend on today's heuristics and features; a padded action the mask
    forbids here fails the test."""

    def __init__(self, actions: list[Any], observation_mode: str) -> None:
        self.actions = actions
        self.observation_mode = observation_mode
        self.played = 0

    def reset(self) -> None:
        self.played = 0

    def act(self, observation: Any, mask: np.ndarray) -> Any:
        action = self.actions[self.played]
        self.played += 1
        if self.observation_mode == "graph":
            return None if action is None else Decision(*action)
        assert mask[action], f"recorded action {self.played - 1} ({action}) is not valid here"
        return action


def _recorded(path: Path) -> tuple[dict, list[JobSpec], NodeTimes, dict[str, Job]]:
    data = json.loads(path.read_text())
    specs = [JobSpec(s["name"], QUERIES[s["query"]], s["arrival_s"]) for s in data["specs"]]
    times = NodeTimes({q: {n: {int(k): v for k, v in levels.items()}
                           for n, levels in nodes.items()}
                       for q, nodes in data["node_times_s"].items()})
    templates = {q: jobs_from_json(j)[0] for q, j in data["templates"].items()}
    return data, specs, times, templates


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_without_spreading_predict_live_reproduces_the_hard_cap_predictions(path: Path) -> None:
    # the hard cap of cdf3bed (a node runs on exactly its q executors) is the live mode with
    # one task per executor held; the recorded runs themselves had 2 q tasks per node
    data, specs, times, templates = _recorded(path)
    assert {r["scheduler"] for r in data["runs"]} >= {"fair", "sjf", "contention_free"}
    for run in data["runs"]:
        model = LiveModel(data["model"]["speed"] * run["pace"], data["model"]["contention"])
        replay = Replay(run["actions"], run["observation_mode"])
        predicted = predict_live(specs, times, templates, replay,
                                 ObservationLimits.from_json(run["limits"]),
                                 data["source"]["executors"], model, NO_SPREAD)
        assert replay.played == len(run["actions"]), run["scheduler"]
        assert predicted.keys() == run["predicted_jct_s"].keys()
        for job, jct in run["predicted_jct_s"].items():
            assert abs(predicted[job] - jct) <= 1e-9, (run["scheduler"], job)


def _templates(*queries: str) -> dict[str, Job]:
    """Equal-work templates (two one-second tasks per node) of ``queries``."""
    return {q: structure_template(JobSpec(q, QUERIES[q]), 2) for q in queries}


class LimitOne:
    """A graph policy: the first schedulable node, at limit 1."""

    observation_mode = "graph"

    def reset(self) -> None:
        pass

    def act(self, state: ClusterState, schedulable: np.ndarray) -> Decision:
        row = int(np.flatnonzero(schedulable)[0])
        job = int(state.stage_job[row])
        return Decision(job, int(state.stage_id[row]), 1, state.job_names[job])


def test_executor_model_replays_the_admission_rule() -> None:
    times = NodeTimes({"q6": {"revenue": {1: 2.0, 2: 1.5}},
                       "q12": {"line": {1: 1.0, 2: 0.8}, "ord": {1: 1.0, 2: 0.6},
                               "count": {1: 1.0, 2: 0.5}}})
    templates = _templates("q6", "q12")
    both = [JobSpec("q6#0", QUERIES["q6"], 0.0), JobSpec("q6#1", QUERIES["q6"], 0.0)]
    # fair: floor 1 each fills both slots, side by side, each slowed by the other
    fair = predict_live(both, times, templates, make_heuristic("fair"), LIMITS, 2,
                        LiveModel(speed=1.0, contention=0.5))
    assert fair == pytest.approx({"q6#0": 3.0, "q6#1": 3.0})
    # sjf: the first job holds both executors for its whole node, the second queues behind it
    sjf = predict_live(both, times, templates, make_heuristic("sjf"), LIMITS, 2,
                       LiveModel(speed=2.0))
    assert sjf == pytest.approx({"q6#0": 3.0, "q6#1": 6.0})
    # a node at full parallelism holds every executor: q12's independent leaves run one by one
    alone = predict_live([JobSpec("q12#0", QUERIES["q12"], 0.0)], times, templates,
                         make_heuristic("sjf"), LIMITS, 2)
    assert alone == pytest.approx({"q12#0": 0.8 + 0.6 + 0.5})


def test_predict_live_follows_the_partition_rule_it_is_given() -> None:
    # one q6 job admitted at q = 1 on E = 2: with 2 or 4 tasks its node spreads to both slots
    # (1.5 s); with 1 task per executor held it stays on its floor (2 s)
    times = NodeTimes({"q6": {"revenue": {1: 2.0, 2: 1.5}}})
    spec = [JobSpec("q6#0", QUERIES["q6"], 0.0)]
    for rule, jct in ((PartitionRule(), 1.5), (PartitionRule(fixed=4), 1.5), (NO_SPREAD, 2.0),
                      (PartitionRule(fixed=1), 2.0)):
        assert predict_live(spec, times, _templates("q6"), LimitOne(), LIMITS, 2,
                            partitions=rule) == pytest.approx({"q6#0": jct}), rule


def test_a_query_without_a_template_is_refused_not_made_up() -> None:
    times = NodeTimes({"q6": {"revenue": {1: 2.0, 2: 1.5}}})
    spec = [JobSpec("q6#0", QUERIES["q6"], 0.0)]
    with pytest.raises(ValueError, match=r"no calibrated template for query q6 "
                                         r"\(known: \['q12'\]\)"):
        predict_live(spec, times, _templates("q12"), make_heuristic("sjf"), LIMITS, 2)
    with pytest.raises(ValueError, match=r"no calibrated template for query q6 \(known: none\)"):
        workload_for(spec, {})


def test_a_template_of_another_dag_is_rejected() -> None:
    times = NodeTimes({"q6": {"revenue": {1: 2.0}}})
    wrong = Job("q6", 0.0, [Stage(id=0, parents=(), num_tasks=2, compute_s=1.0),
                            Stage(id=1, parents=(0,), num_tasks=2, compute_s=1.0)])
    with pytest.raises(ValueError, match="template 'q6' does not have the DAG of query q6"):
        predict_live([JobSpec("q6#0", QUERIES["q6"], 0.0)], times, {"q6": wrong},
                     make_heuristic("fair"), LIMITS, 2)
    with pytest.raises(KeyError, match="no isolated timing for node q6/revenue"):
        predict_live([JobSpec("q6#0", QUERIES["q6"], 0.0)], NodeTimes({}), _templates("q6"),
                     make_heuristic("fair"), LIMITS, 2)


def _node_run(name: str, launch_s: float, end_s: float, parallelism: int, partitions: int,
              status: str = "done", error: str = "") -> JobRecord:
    node = NodeRecord("revenue", [], launch_s, end_s, parallelism, partitions, error=error)
    return JobRecord(name, "q6", launch_s, [node], launch_s, end_s, status)


def test_fit_recovers_speed_and_contention_from_node_durations() -> None:
    times = NodeTimes({"q6": {"revenue": {1: 2.0, 2: 1.0}}})
    speed, contention = 1.3, 0.4
    # two q6 nodes side by side at q = 1 (their floors fill both slots: 1 slot each, slowed
    # by each other), then one alone at q = 1 with 4 tasks (it spreads to both slots)
    pair = speed * 2.0 * (1 + contention)
    jobs = [_node_run("q6#0", 0.0, pair, 1, 2), _node_run("q6#1", 0.0, pair, 1, 2),
            _node_run("q6#2", 10.0, 10.0 + speed * 1.0, 1, 4)]
    result = RunResult("fair", jobs, 2, 20.0)
    samples = node_samples(result, times)
    # (seconds, alone rate on its slots, others running): the lone node's rate is that of 2
    # slots, not of its floor
    assert [rows.shape for rows in samples] == [(1, 3)] * 3
    assert np.concatenate(samples).ravel().tolist() == pytest.approx(
        [pair, 0.5, 1, pair, 0.5, 1, speed, 1.0, 0])
    assert fit_live_model([result], times) == LiveModel(speed, contention)
    # a run on a machine found twice as slow by the probe (pace 2) fits the same model
    slow = RunResult("fair", [_node_run(j.name, j.nodes[0].launch_s * 2, j.nodes[0].end_s * 2,
                                        1, j.nodes[0].partitions) for j in jobs], 2, 40.0)
    assert fit_live_model([slow], times, [2.0]) == LiveModel(speed, contention)
    assert pace_of(times, {"q6": {"revenue": 2.0}}, 2) == pytest.approx(2.0)


def test_a_fit_without_samples_is_an_error_naming_the_runs() -> None:
    times = NodeTimes({"q6": {"revenue": {1: 2.0, 2: 1.0}}})
    with pytest.raises(ValueError, match="no run to fit on"):
        fit_live_model([], times)
    # the run's only node failed: nothing to fit, not the default model
    failed = RunResult("fair", [_node_run("q6#0", 0.0, 2.0, 1, 2, "failed", "boom")], 2, 2.0)
    with pytest.raises(ValueError, match=r"no finished node in the runs \['fair'\]"):
        fit_live_model([failed], times)
    # one node at q = 1 with 2 tasks measured 2 s: alone it ran on both slots (1 s there), so
    # speed 2; contention unidentified (0 first)
    done = RunResult("fair", [_node_run("q6#0", 0.0, 2.0, 1, 2)], 2, 2.0)
    assert fit_live_model([done], times) == LiveModel(2.0, 0.0)
    # a record without its partition count cannot be placed on slots
    unknown = RunResult("fair", [_node_run("q6#0", 0.0, 2.0, 1, 0)], 2, 2.0)
    with pytest.raises(ValueError, match=r"fair run, job q6#0 node revenue: no partition count"):
        fit_live_model([unknown], times)


def test_untimed_parallelism_and_empty_probes_are_errors() -> None:
    times = NodeTimes({"q6": {"revenue": {1: 2.0}}})
    with pytest.raises(KeyError, match=r"q6/revenue at parallelism 2 \(timed at \[1\]\)"):
        times.wall_s("q6", "revenue", 2)
    with pytest.raises(ValueError, match=r"probe queries \[\] have no isolated time"):
        pace_of(times, {}, 1)


def test_compare_refuses_a_finished_job_without_prediction() -> None:
    result = RunResult("fair", [_node_run("q6#0", 0.0, 2.0, 1, 2)], 2, 2.0)
    assert compare(result, {"q6#0": 3.0}) == [{"job": "q6#0", "measured_jct_s": 2.0,
                                               "predicted_jct_s": 3.0, "rel_error": 0.5}]
    with pytest.raises(KeyError, match="no predicted JCT for job q6#0 of the fair run"):
        compare(result, {})
    assert summarize([])["jobs"] == 0 and np.isnan(summarize([])["share_within_25pct"])


def _two_tasks_s(spark) -> float:
    """Wall seconds of a Spark job of two tasks that sleep 1 s each."""
    started = time.monotonic()
    spark.sparkContext.parallelize(range(2), 2).foreach(lambda _: time.sleep(1.0))
    return time.monotonic() - started


def test_slots_held_leaves_a_timed_job_the_other_slots_only(spark) -> None:
    # local[2]: with one slot held the two 1-s tasks run one after the other (>= 2 s; side by
    # side they take about 1 s); on exit the ballast job is gone
    with slots_held(spark, 1):
        assert _two_tasks_s(spark) >= 2.0
    tracker = spark.sparkContext.statusTracker()
    assert tracker.getActiveJobsIds() == []
    # more slots than the session has: a one-line error, and nothing is left holding
    with pytest.raises(RuntimeError, match=r"the ballast holds [0-2] of 3 slot\(s\) after 5 s"):
        with slots_held(spark, 3, timeout_s=5.0):
            pass
    assert tracker.getActiveJobsIds() == []
