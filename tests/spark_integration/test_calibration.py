"""The executor model (spark_integration/calibration.py), no Spark session needed:
``predict_live`` is the simulator's live mode and reproduces, on recorded live runs, the
predictions its earlier stand-alone implementation made; the admission rule on hand-computed
cases; the fit of speed and contention."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from envs.spark_dag import Decision, Job, ObservationLimits, Stage, jobs_from_json
from heuristics.spark_dag import make_heuristic
from spark_integration.calibration import (
    LiveModel,
    NodeTimes,
    compare,
    fit_live_model,
    node_samples,
    pace_of,
    predict_live,
    summarize,
    workload_for,
)
from spark_integration.executor import JobRecord, NodeRecord, RunResult, structure_template
from spark_integration.jobs import JobSpec
from spark_integration.queries import QUERIES

LIMITS = ObservationLimits()
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


def _run_result(record: dict) -> RunResult:
    jobs = [JobRecord(j["name"], j["query"], j["arrival_s"],
                      [NodeRecord(n["name"], n["parents"], n["launch_s"], n["end_s"],
                                  n["parallelism"]) for n in j["nodes"]],
                      j["start_s"], j["end_s"], j["status"]) for j in record["jobs"]]
    return RunResult(record["scheduler"], jobs, record["total_executors"], record["wall_s"])


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_predict_live_reproduces_the_recorded_predictions(path: Path) -> None:
    data, specs, times, templates = _recorded(path)
    assert {r["scheduler"] for r in data["runs"]} >= {"fair", "sjf", "contention_free"}
    for run in data["runs"]:
        model = LiveModel(data["model"]["speed"] * run["pace"], data["model"]["contention"])
        replay = Replay(run["actions"], run["observation_mode"])
        predicted = predict_live(specs, times, templates, replay,
                                 ObservationLimits.from_json(run["limits"]),
                                 data["source"]["executors"], model)
        assert replay.played == len(run["actions"]), run["scheduler"]
        assert predicted.keys() == run["predicted_jct_s"].keys()
        for job, jct in run["predicted_jct_s"].items():
            assert abs(predicted[job] - jct) <= 1e-9, (run["scheduler"], job)


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_fit_on_the_recorded_fair_run_gives_the_recorded_model(path: Path) -> None:
    data, _, times, _ = _recorded(path)
    fair = next(r for r in data["runs"] if r["scheduler"] == "fair")
    model = fit_live_model([_run_result(fair["record"])], times, [fair["pace"]])
    assert model == LiveModel(data["model"]["speed"], data["model"]["contention"])


def _templates(*queries: str) -> dict[str, Job]:
    """Equal-work templates (two one-second tasks per node) of ``queries``."""
    return {q: structure_template(JobSpec(q, QUERIES[q]), 2) for q in queries}


def test_executor_model_replays_the_admission_rule() -> None:
    times = NodeTimes({"q6": {"revenue": {1: 2.0, 2: 1.5}},
                       "q12": {"line": {1: 1.0, 2: 0.8}, "ord": {1: 1.0, 2: 0.6},
                               "count": {1: 1.0, 2: 0.5}}})
    templates = _templates("q6", "q12")
    both = [JobSpec("q6#0", QUERIES["q6"], 0.0), JobSpec("q6#1", QUERIES["q6"], 0.0)]
    # fair: one executor each, side by side, each slowed by the other
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


def test_fit_recovers_speed_and_contention_from_node_durations() -> None:
    times = NodeTimes({"q6": {"revenue": {1: 2.0, 2: 1.0}}})
    speed, contention = 1.3, 0.4
    jobs = []
    # two q6 jobs side by side at parallelism 1, then one alone at parallelism 2
    for name, launch, parallelism, others in (("q6#0", 0.0, 1, 1), ("q6#1", 0.0, 1, 1),
                                              ("q6#2", 10.0, 2, 0)):
        duration = speed * times.wall_s("q6", "revenue", parallelism) * (1 + contention * others)
        node = NodeRecord("revenue", [], launch, launch + duration, parallelism)
        jobs.append(JobRecord(name, "q6", launch, [node], launch, launch + duration, "done"))
    result = RunResult("fair", jobs, 2, 20.0)
    assert node_samples(result, times)[:, 2] == pytest.approx([1.0, 1.0, 0.0])
    assert fit_live_model([result], times) == LiveModel(speed, contention)
    # a run on a machine found twice as slow by the probe (pace 2) fits the same model
    slow = RunResult("fair", [JobRecord(j.name, j.query, j.arrival_s, [NodeRecord(
        n.name, [], n.launch_s * 2, n.end_s * 2, n.parallelism) for n in j.nodes])
        for j in jobs], 2, 40.0)
    assert fit_live_model([slow], times, [2.0]) == LiveModel(speed, contention)
    assert pace_of(times, {"q6": {"revenue": 2.0}}, 2) == pytest.approx(2.0)


def _one_node_run(status: str, error: str = "") -> RunResult:
    node = NodeRecord("revenue", [], 0.0, 2.0, 1, error=error)
    return RunResult("fair", [JobRecord("q6#0", "q6", 0.0, [node], 0.0, 2.0, status)], 2, 2.0)


def test_a_fit_without_samples_is_an_error_naming_the_runs() -> None:
    times = NodeTimes({"q6": {"revenue": {1: 2.0, 2: 1.0}}})
    with pytest.raises(ValueError, match="no run to fit on"):
        fit_live_model([], times)
    # the run's only node failed: nothing to fit, not the default model
    with pytest.raises(ValueError, match=r"no finished node in the runs \['fair'\]"):
        fit_live_model([_one_node_run("failed", "boom")], times)
    # one good node measured 2 s against 2 s alone: speed 1, contention unidentified (0 first)
    assert fit_live_model([_one_node_run("done")], times) == LiveModel(1.0, 0.0)


def test_untimed_parallelism_and_empty_probes_are_errors() -> None:
    times = NodeTimes({"q6": {"revenue": {1: 2.0}}})
    with pytest.raises(KeyError, match=r"q6/revenue at parallelism 2 \(timed at \[1\]\)"):
        times.wall_s("q6", "revenue", 2)
    with pytest.raises(ValueError, match=r"probe queries \[\] have no isolated time"):
        pace_of(times, {}, 1)


def test_compare_refuses_a_finished_job_without_prediction() -> None:
    result = _one_node_run("done")
    assert compare(result, {"q6#0": 3.0}) == [{"job": "q6#0", "measured_jct_s": 2.0,
                                               "predicted_jct_s": 3.0, "rel_error": 0.5}]
    with pytest.raises(KeyError, match="no predicted JCT for job q6#0 of the fair run"):
        compare(result, {})
    assert summarize([])["jobs"] == 0 and np.isnan(summarize([])["share_within_25pct"])
