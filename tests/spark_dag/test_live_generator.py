"""Live-mode streams from a recorded trace: templates paired with their measured node times,
the benchmark's offered load, refusals that name the file."""

import json
from pathlib import Path

import numpy as np
import pytest

from envs.spark_dag import (
    LiveSequenceGenerator,
    WorkloadError,
    load_live_templates,
    recorded_executors,
)

TRACE = Path(__file__).resolve().parents[2] / "data" / "spark_traces" / "tpch_sf1_local_e1-2.json"


def test_templates_carry_every_recorded_executor_count():
    templates = load_live_templates(TRACE)
    calibration = json.loads(TRACE.read_text())["calibration"]
    assert len(templates) == 16
    q1 = templates["q1"]
    assert [s.name for s in q1.template.stages] == list(calibration["2"]["q1"])
    for stage, timing in zip(q1.template.stages, q1.timings, strict=True):
        assert timing.walls_s == {int(level): calibration[level]["q1"][stage.name]["wall_s"]
                                  for level in calibration}


def test_a_trace_is_played_on_the_executor_counts_it_was_recorded_at():
    assert recorded_executors(load_live_templates(TRACE)) == 2
    bed = load_live_templates(TRACE.with_name("tpch_sf0.2_bed10_e1-4.json"))
    assert recorded_executors(bed) == 4
    q1 = bed["q1"]
    del q1.timings[0].walls_s[3]  # one node without count 3: the stream can use 1..2 only
    assert recorded_executors(bed) == 2


def test_stream_follows_the_benchmark_load_definition():
    templates = load_live_templates(TRACE)
    generator = LiveSequenceGenerator(templates, num_jobs=400, load=1.5, num_executors=2)
    # the mean isolated job time on 2 executors, read straight from the trace's calibration
    at_two = json.loads(TRACE.read_text())["calibration"]["2"]
    alone_s = [sum(node["wall_s"] for node in at_two[q].values()) for q in templates]
    assert len(alone_s) == 16
    assert generator.mean_gap_s == pytest.approx(np.mean(alone_s) / 1.5, rel=1e-12)
    jobs = generator(np.random.default_rng(0))
    assert jobs[0].arrival_s == 0.0 and len({job.name for job in jobs}) == 400
    gaps = np.diff([job.arrival_s for job in jobs])
    assert np.all(gaps >= 0)
    assert gaps.mean() == pytest.approx(generator.mean_gap_s, rel=0.15)
    assert all(job.template.name == job.name and job.template.arrival_s == job.arrival_s
               for job in jobs)
    again = generator(np.random.default_rng(0))
    assert [(j.name, j.arrival_s) for j in again] == [(j.name, j.arrival_s) for j in jobs]


def test_traces_without_per_count_times_are_refused_naming_the_file(tmp_path):
    data = json.loads(TRACE.read_text())
    del data["calibration"]
    (tmp_path / "none.json").write_text(json.dumps(data))
    with pytest.raises(WorkloadError, match=r"none\.json: no 'calibration'"):
        load_live_templates(tmp_path / "none.json")
    data = json.loads(TRACE.read_text())
    del data["calibration"]["1"]["q6"]
    (tmp_path / "hole.json").write_text(json.dumps(data))
    with pytest.raises(WorkloadError, match=r"hole\.json: calibration\['1'\]\['q6'\] has no node"):
        load_live_templates(tmp_path / "hole.json")
    with pytest.raises(ValueError, match="load > 0"):
        LiveSequenceGenerator(load_live_templates(TRACE), load=0.0)


def test_a_count_the_trace_never_recorded_is_refused_naming_it():
    # the trace holds counts 1 and 2: a 3-executor stream has no time for a node on 3
    with pytest.raises(ValueError, match=r"node '\w+': no wall time at executor count\(s\) "
                                         r"\[3\] of 1\.\.3 \(recorded: \[1, 2\]\)"):
        LiveSequenceGenerator(load_live_templates(TRACE), num_executors=3)
