"""``benchmarks.spark_real`` after the runs, on hand-made rows and run records (no Spark): the
executor model is fitted on the first *counted* ``fair`` run and predicts every run on its own
stream; the report has a table per (master, load) and lists the runs set aside; the decision
target pools the counted agent runs' shadow tallies (not measured without them); the
per-driver prediction target is the worst driver's share."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.report import Missing
from benchmarks.spark_real_runs import EXCLUDED, LiveRun, MasterRun, calibrate
from benchmarks.spark_real_stats import (
    Plan,
    all_targets,
    decisions_target,
    pace_check,
    pooled_ratios,
    prediction_per_driver_target,
    spark_real_markdown,
    stream_ratios,
    summarize,
)
from envs.spark_dag import ObservationLimits
from spark_integration.calibration import NodeTimes
from spark_integration.executor import JobRecord, NodeRecord, RunResult, structure_template
from spark_integration.jobs import JobSpec
from spark_integration.queries import QUERIES

Q14 = QUERIES["q14"]  # line, part_f -> share
TIMES = NodeTimes({"q14": {"line": {1: 2.0, 2: 1.2}, "part_f": {1: 1.0, 2: 0.6},
                           "share": {1: 0.8, 2: 0.5}}})


def _specs(arrivals: list[float]) -> list[JobSpec]:
    return [JobSpec(f"q14#{i}", Q14, a) for i, a in enumerate(arrivals)]


def _result(name: str, specs: list[JobSpec], slow: float) -> RunResult:
    """Each job alone, its nodes one after the other at parallelism 2, ``slow`` x the isolated
    times; 4 partitions per node (the fixed rule at E = 2)."""
    jobs, now = [], 0.0
    for spec in specs:
        now = max(now, spec.arrival_s)
        start, nodes = now, []
        for node in Q14.nodes:
            wall = slow * TIMES.walls_s["q14"][node.name][2]
            nodes.append(NodeRecord(node.name, list(node.parents), now, now + wall, 2, 4))
            now += wall
        jobs.append(JobRecord(spec.name, "q14", spec.arrival_s, nodes, start, now, "done"))
    return RunResult(name, jobs, 2, now)


def _live(name: str, seed: int, specs: list[JobSpec], slow: float, counted: bool) -> LiveRun:
    row = {"load": 1.5, "seed": seed, "attempt": 0, "counted": counted}
    return LiveRun(name, 0, _result(name, specs, slow), ObservationLimits(), 1.0, specs, row)


def _master_run(live_runs: list[LiveRun]) -> MasterRun:
    template = structure_template(_specs([0.0])[0], 4)
    return MasterRun([], live_runs, [], {}, {}, TIMES, {"q14": template}, 0.0, 2, 4, {})


def test_the_model_is_fitted_on_the_first_counted_fair_run_and_predicts_each_stream():
    stream_a, stream_b = _specs([0.0]), _specs([0.0, 0.5, 9.0])
    excluded = _live("fair", 0, stream_a, 3.0, counted=False)
    fitted = _live("fair", 0, stream_a, 1.0, counted=True)
    other = _live("sjf", 1, stream_b, 1.0, counted=True)
    model, rows = calibrate("local", _master_run([excluded, fitted, other]), Missing())
    # the counted fair run ran at exactly the isolated times: speed 1, not the excluded 3x
    assert model.speed == pytest.approx(1.0, abs=0.021)
    assert [(r["scheduler"], r["seed"], r["job"], r["held_out"], r["counted"]) for r in rows] == [
        ("fair", 0, "q14#0", True, False), ("fair", 0, "q14#0", False, True),
        ("sjf", 1, "q14#0", True, True), ("sjf", 1, "q14#1", True, True),
        ("sjf", 1, "q14#2", True, True)]
    # the measured side is each run's own record
    assert rows[0]["measured_jct_s"] == pytest.approx(3.0 * 2.3)
    assert rows[1]["measured_jct_s"] == pytest.approx(2.3)


def test_without_a_counted_fair_run_there_is_no_model_and_a_missing_line():
    missing = Missing()
    run = _master_run([_live("fair", 0, _specs([0.0]), 3.0, counted=False)])
    assert calibrate("local", run, missing) == (None, [])
    assert missing.entries == [{"what": "executor model on local", "reason":
                                "no counted `fair` run with a finished node to fit it on"}]


def _row(seed: int, repeat: int, name: str, jct: float, counted: bool = True) -> dict:
    return {"master": "local", "load": 1.5, "seed": seed, "repeat": repeat, "scheduler": name,
            "mean_jct_s": jct, "makespan_s": 2 * jct, "failed_jobs": 0,
            "pace": 1.0 if counted else 1.6, "drift": 1.0 if counted else 1.6,
            "counted": counted, "disturbed": not counted,
            "status": "counted" if counted else EXCLUDED, "attempt": int(not counted),
            "decision_ms": {"median": 0.3, "p99": 0.9}}


def test_the_report_has_a_table_per_master_and_load_and_lists_the_runs_set_aside():
    drivers = ["spark-fifo", "sjf"]
    rows = [_row(seed, 0, name, jct) for seed in (0, 1, 2)
            for name, jct in (("spark-fifo", 10.0), ("sjf", 6.0 + seed))]
    rows.append(_row(2, 0, "sjf", 55.0, counted=False))
    plan = Plan(1.0, 8, [0, 1, 2], [1.5], 1, 2, 0.25, None, ["local"], 2, drivers, [])
    per_stream = stream_ratios(rows)
    pooled = pooled_ratios(per_stream)
    check = pace_check(rows, 0.25)
    missing = Missing()
    targets = all_targets(rows, pooled, [], plan, missing)
    text = spark_real_markdown(argparse.Namespace(partition_rule="fixed"), plan,
                               summarize(rows), per_stream, pooled, rows, check, [], [],
                               {"local": {"model": None, "session": {"reference_pace": 1.0}}}, 1.0,
                               (1.0,), (1.0,))
    assert "## local, load 1.5" in text
    # best pipesched / FIFO per stream 0.6, 0.7, 0.8: pooled 0.700 +- 0.248, median 0.700
    assert "| 0.700 ± 0.248, median 0.700 (3) |" in text
    assert "| seed 2 | 10.000 | 8.000 |" in text  # the counted sjf run, not the excluded 55 s
    assert "7 runs, 1 disturbed (probe drift outside [0.80, 1.25]), 0 re-run, 1 excluded" in text
    assert f"| local | 1.5 | 2 | 0 | sjf | 1 | 1.60 | 55.00 | 0 | {EXCLUDED} |" in text
    assert "| seed 2 | none | none | none | 0.800 | none | none |" in text
    decision = targets["agent_decisions_differ_from_sjf"]
    assert decision["met"] is False and decision["reason"].startswith("not measured: ")
    not_measured = {m["what"] for m in missing.entries}
    assert "target agent_decisions_differ_from_sjf" in not_measured
    assert "target best_pipesched_over_spark_fair_le0.95_local_load1" in not_measured


def test_the_decision_target_pools_the_counted_agent_runs_only():
    def agent(counted: bool, decisions: int, same_stage: int, same: int) -> dict:
        return {**_row(0, 0, "agent", 5.0, counted),
                "shadow": {"shadow": "sjf", "decisions": decisions, "same_stage": same_stage,
                           "same_decision": same}}

    rows = [agent(True, 10, 9, 8), agent(True, 30, 20, 12), agent(False, 100, 100, 100),
            _row(0, 0, "sjf", 5.0)]
    entry = decisions_target(rows)
    assert entry["decisions"] == 40
    assert entry["value"] == 1 - 20 / 40 and entry["met"]
    assert entry["stage_differs"] == 1 - 29 / 40
    assert decisions_target([agent(True, 10, 10, 10)])["met"] is False
    assert decisions_target(rows[2:])["reason"].startswith("not measured")


def test_the_prediction_target_is_judged_on_the_worst_driver():
    def job(scheduler: str, error: float, held_out: bool = True) -> dict:
        return {"master": "local", "scheduler": scheduler, "rel_error": error,
                "held_out": held_out}

    calibration = [job("sjf", 0.1), job("sjf", 0.2), job("sjf", 0.3), job("sjf", 0.1),
                   job("agent", 0.1), job("agent", 0.5), job("fair", 0.9, held_out=False)]
    rows = [_row(0, 0, "sjf", 5.0)]
    entry = prediction_per_driver_target(calibration, rows, ["local"])
    assert entry["value"] == 0.5 and entry["worst"] == "agent on local" and not entry["met"]
    good = prediction_per_driver_target(calibration[:4], rows, ["local"])
    assert good["value"] == 0.75 and not good["met"]
    assert prediction_per_driver_target(calibration[:2], rows, ["local"])["met"]
    assert prediction_per_driver_target([], rows, ["local"])["reason"].startswith("no held-out")
