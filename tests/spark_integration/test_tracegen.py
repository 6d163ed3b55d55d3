"""Trace extraction from a real event log of the test session."""

from __future__ import annotations

import json

import numpy as np
import pytest

from envs.spark_dag import load_workload
from spark_integration.queries import QUERIES
from spark_integration.tracegen import (
    convert_event_log,
    list_schedule_s,
    main,
    parse_event_log,
)


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


def test_node_times_take_medians_and_the_nearest_level() -> None:
    from spark_integration.calibration import NodeTimes

    timed = {("q12", 0): {1: {"line": 1.0, "ord": 2.0, "count": 3.0}, 2: {"line": 0.5}},
             ("q12", 1): {1: {"line": 3.0, "ord": 2.0, "count": 3.0}, 2: {"line": 0.7}},
             ("q12", 2): {1: {"line": 2.5, "ord": 2.0, "count": 3.0}, 2: {"line": 0.9}}}
    times = NodeTimes.from_timings(timed)
    assert times.wall_s("q12", "line", 1) == pytest.approx(2.5)
    assert times.wall_s("q12", "line", 2) == pytest.approx(0.7)
    assert times.wall_s("q12", "ord", 2) == pytest.approx(2.0)  # only level 1 timed
    assert times.job_s("q12", 1) == pytest.approx(7.5)
    with pytest.raises(KeyError, match="q12/nope"):
        times.wall_s("q12", "nope", 1)
