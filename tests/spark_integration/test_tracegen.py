"""Trace extraction from a real event log of the test session."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from envs.spark_dag import load_workload
from spark_integration.queries import QUERIES
from spark_integration.tracegen import (
    convert_event_log,
    list_schedule_s,
    main,
    parse_event_log,
    query_job,
)

GROUP = "pipesched|r1|q6#0|revenue"
TASK_END = {
    "Event": "SparkListenerTaskEnd", "Stage ID": 7, "Task End Reason": {"Reason": "Success"},
    "Task Info": {"Task ID": 3, "Executor ID": "1", "Launch Time": 1000, "Finish Time": 1900},
    "Task Metrics": {"Executor Run Time": 800, "Executor CPU Time": 500_000_000,
                     "Executor Deserialize Time": 30, "Result Serialization Time": 20,
                     "Shuffle Read Metrics": {"Fetch Wait Time": 100, "Remote Bytes Read": 4096,
                                              "Local Bytes Read": 1024},
                     "Shuffle Write Metrics": {"Shuffle Write Time": 200_000_000}}}


def _write_log(path: Path, task_end: dict) -> Path:
    events = [{"Event": "SparkListenerJobStart", "Job ID": 0, "Submission Time": 900,
               "Stage Infos": [{"Stage ID": 7, "Parent IDs": []}],
               "Properties": {"spark.jobGroup.id": GROUP}},
              task_end,
              {"Event": "SparkListenerJobEnd", "Job ID": 0, "Completion Time": 2000}]
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return path


def test_event_log_becomes_workload_json(all_queries_run, event_log_dir, tmp_path) -> None:
    result, _ = all_queries_run
    q3 = result.jobs[list(QUERIES).index("q3")]
    assert q3.status == "done"
    run_id = q3.nodes[0].tag.split("-")[1]
    traces = parse_event_log(event_log_dir)
    mine = {k: v for k, v in traces.items() if k.split("|")[1] == run_id}
    assert {t.node for t in mine.values() if t.job == q3.name} == set(QUERIES["q3"].by_name)
    out = convert_event_log(event_log_dir, tmp_path / "trace.json")
    jobs = {job.name: job for job in load_workload(out)}
    job = jobs[f"{run_id}/{q3.name}"]
    dag = QUERIES["q3"]
    for stage, node in zip(job.stages, dag.nodes, strict=True):
        assert stage.name == node.name
        assert [dag.nodes[p].name for p in stage.parents] == list(node.parents)
        assert stage.num_tasks >= 1 and stage.work_s > 0
    # joins read shuffled data: bytes and (possibly zero) fetch time are recorded per task
    top = job.stages[-1]
    assert top.network_bytes is not None and float(np.sum(top.network_bytes)) > 0
    assert json.loads(out.read_text())["format"] == "pipesched.spark_workload/1"


def test_list_schedule_and_errors(tmp_path) -> None:
    assert list_schedule_s([3, 1, 1, 1], 2) == pytest.approx(3.0)
    assert list_schedule_s([1, 1, 1], 1) == pytest.approx(3.0)
    assert main(["--event-log", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    (tmp_path / "log").write_text('{"Event": "SparkListenerLogStart"}\nnot json\n')
    with pytest.raises(ValueError, match="log:2: invalid JSON"):
        parse_event_log(tmp_path / "log")


def test_shipped_trace_covers_every_query() -> None:
    from spark_integration.tracegen import default_trace_path, load_templates

    templates = load_templates(default_trace_path(0.1))
    assert set(templates) == set(QUERIES)
    for name, job in templates.items():
        assert [s.name for s in job.stages] == [n.name for n in QUERIES[name].nodes]
        assert all(s.work_s > 0 for s in job.stages)


def test_node_times_take_medians_and_refuse_an_untimed_level() -> None:
    from spark_integration.calibration import NodeTimes

    timed = {("q12", 0): {1: {"line": 1.0, "ord": 2.0, "count": 3.0}, 2: {"line": 0.5}},
             ("q12", 1): {1: {"line": 3.0, "ord": 2.0, "count": 3.0}, 2: {"line": 0.7}},
             ("q12", 2): {1: {"line": 2.5, "ord": 2.0, "count": 3.0}, 2: {"line": 0.9}}}
    times = NodeTimes.from_timings(timed)
    assert times.wall_s("q12", "line", 1) == pytest.approx(2.5)
    assert times.wall_s("q12", "line", 2) == pytest.approx(0.7)
    with pytest.raises(KeyError, match=r"q12/ord at parallelism 2 \(timed at \[1\]\)"):
        times.wall_s("q12", "ord", 2)  # only level 1 timed: no stand-in from it
    assert times.job_s("q12", 1) == pytest.approx(7.5)
    with pytest.raises(KeyError, match="q12/nope"):
        times.wall_s("q12", "nope", 1)


def test_task_metrics_convert_by_hand(tmp_path: Path) -> None:
    trace = parse_event_log(_write_log(tmp_path / "log", TASK_END))[GROUP]
    (task,) = trace.tasks
    # fetch wait 100 ms, write 0.2 s, run 0.8 s - both = 0.5 s, plus 30 + 20 ms overhead
    assert (task.network_s, task.write_s, task.compute_s) == pytest.approx((0.1, 0.2, 0.55))
    assert (task.network_bytes, task.remote_bytes, task.cpu_s) == (5120.0, 4096.0, 0.5)
    assert (task.executor, task.launch_ms, task.finish_ms) == ("1", 1000.0, 1900.0)
    assert (trace.first_submit_ms, trace.last_complete_ms) == (900, 2000)


@pytest.mark.parametrize("where, field", [
    ((), "Task Metrics"), (("Task Metrics",), "Executor Run Time"),
    (("Task Metrics", "Shuffle Read Metrics"), "Fetch Wait Time"),
    (("Task Metrics", "Shuffle Write Metrics"), "Shuffle Write Time"),
    (("Task Info",), "Launch Time")])
def test_a_missing_metric_is_an_error_naming_event_and_field(tmp_path: Path, where: tuple,
                                                              field: str) -> None:
    event = copy.deepcopy(TASK_END)
    holder = event
    for key in where:
        holder = holder[key]
    del holder[field]
    log = _write_log(tmp_path / "log", event)
    with pytest.raises(ValueError, match=rf"log: SparkListenerTaskEnd of stage 7 task 3"
                                         rf".*: no field '{field}'"):
        parse_event_log(log)


def test_a_query_missing_from_the_log_is_an_error(tmp_path: Path) -> None:
    traces = parse_event_log(_write_log(tmp_path / "log", TASK_END))
    job, info = query_job(QUERIES["q6"], traces, "q6#0", "r1")
    assert job.stages[0].num_tasks == 1 and info["revenue"]["tasks"] == 1
    with pytest.raises(ValueError, match=r"no node of q6 run r2/q6#0 is in the event log"):
        query_job(QUERIES["q6"], traces, "q6#0", "r2")
