"""Wave classification of traced tasks (pure), multi-count recording options, and the shipped
traces at several executor counts."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from spark_integration.queries import QUERIES
from spark_integration.tracegen import (
    WAVES,
    TaskRun,
    classify_waves,
    count_master,
    main,
    node_waves,
    parse_event_log,
)

TRACE_DIR = Path("data/spark_traces")
MULTI_COUNT_TRACES = sorted(TRACE_DIR.glob("tpch_*_e*-*.json"))


def test_local_slots_are_inferred_from_launch_and_finish_times() -> None:
    # local[2]: every task on "driver"; stage s1 has three tasks, s2 two, then job B starts
    tasks = [TaskRun("A", "s1", "driver", 0, 10), TaskRun("A", "s1", "driver", 0, 5),
             TaskRun("A", "s1", "driver", 5, 8),  # on the slot freed at 5
             TaskRun("A", "s2", "driver", 10, 12), TaskRun("A", "s2", "driver", 10, 11),
             TaskRun("A", "s2", "driver", 12, 13),
             TaskRun("B", "s1", "driver", 20, 21)]
    assert classify_waves(tasks, {"driver": 2}) == [
        "fresh", "fresh", "rest_wave", "first_wave", "first_wave", "rest_wave", "fresh"]
    # one slot: one fresh task per job, one first-wave task per later stage
    serial = [TaskRun("A", "s1", "driver", 0, 1), TaskRun("A", "s1", "driver", 1, 2),
              TaskRun("A", "s2", "driver", 2, 3), TaskRun("B", "s2", "driver", 3, 4),
              TaskRun("A", "s2", "driver", 4, 5)]
    assert classify_waves(serial, {"driver": 1}) == [
        "fresh", "rest_wave", "first_wave", "fresh", "rest_wave"]


def test_result_order_follows_the_input_and_the_finish_race_is_absorbed() -> None:
    # the driver stamps Finish Time after the freed core already got its next task: the task
    # launched at 10.0 follows the one "finishing" at 10.003, not the slot busy until 20
    tasks = [TaskRun("A", "s2", "driver", 10.0, 11.0), TaskRun("A", "s1", "driver", 0, 20),
             TaskRun("A", "s1", "driver", 0, 10.003)]
    assert classify_waves(tasks, {"driver": 2}) == ["first_wave", "fresh", "fresh"]


def test_cluster_executors_are_one_slot_each_by_default() -> None:
    tasks = [TaskRun("A", "s1", "1", 0, 5), TaskRun("A", "s1", "2", 0, 5),
             TaskRun("A", "s1", "1", 5, 9), TaskRun("A", "s2", "2", 6, 7),
             TaskRun("A", "s2", "1", 9, 10)]
    assert classify_waves(tasks) == ["fresh", "fresh", "rest_wave", "first_wave",
                                     "first_wave"]


def test_classification_rejects_bad_records() -> None:
    with pytest.raises(ValueError, match="finish 1 before launch 2"):
        classify_waves([TaskRun("A", "s", "1", 2, 1)])
    with pytest.raises(ValueError, match="slots must be >= 1"):
        classify_waves([TaskRun("A", "s", "driver", 0, 1)], {"driver": 0})


def test_executor_counts_map_to_masters_and_bad_options_fail(tmp_path, capsys) -> None:
    assert count_master("local", 3) == ("local[3]", {})
    assert count_master("local[2]", 1) == ("local[1]", {})
    url, conf = count_master("spark://10.213.0.1:7077", 2)
    assert url == "spark://10.213.0.1:7077" and conf["spark.cores.max"] == "2"
    # the driver listens on its own route to the master (build_session's default), not on the
    # master's address: that one is not local when the driver sits in another namespace
    assert "spark.driver.host" not in conf and "spark.driver.bindAddress" not in conf
    with pytest.raises(ValueError, match="--master must be"):
        count_master("yarn", 2)
    assert main(["--executor-counts", "1,x", "--out", str(tmp_path / "t.json")]) == 2
    assert "--executor-counts must be comma-separated integers" in capsys.readouterr().err
    assert main(["--conf", "novalue", "--out", str(tmp_path / "t.json")]) == 2
    assert "--conf: expected KEY=VALUE" in capsys.readouterr().err


def test_real_event_log_waves(all_queries_run, event_log_dir) -> None:
    """The test session (local[2]) ran every query: each task gets a wave, and per job at
    most two slots (and at least one) start fresh."""
    traces = parse_event_log(event_log_dir)
    labels = node_waves(traces, {"driver": 2})
    fresh: Counter[str] = Counter()
    jobs = set()
    for group, waves in labels.items():
        trace = traces[group]
        assert len(waves) == len(trace.tasks) and set(waves) <= set(WAVES)
        jobs.add((trace.run, trace.job))
        fresh[f"{trace.run}|{trace.job}"] += waves.count("fresh")
    assert jobs and all(1 <= fresh[f"{r}|{j}"] <= 2 for r, j in jobs)


@pytest.mark.parametrize("path", MULTI_COUNT_TRACES, ids=lambda p: p.name)
def test_shipped_multi_count_trace(path: Path) -> None:
    data = json.loads(path.read_text())
    counts = [str(c) for c in data["source"]["executor_counts"]]
    repeats = data["source"]["repeats"]
    assert len(counts) >= 2 and path.stat().st_size < 2 * 2**20
    names = {job["name"].rsplit("/", 1)[-1] for job in data["jobs"]}
    assert names == set(QUERIES)
    for job in data["jobs"]:
        fresh: dict[str, int] = defaultdict(int)
        for stage in job["stages"]:
            assert sorted(stage["waves"], key=int) == counts
            for count, entry in stage["waves"].items():
                samples = [s for wave in WAVES for s in entry[wave]]
                # the partitioning is the largest count's at every count: same tasks per run
                assert len(samples) == stage["num_tasks"] * repeats, (job["name"], count)
                assert all(s > 0 for s in samples)
                assert 0.0 <= entry["network_fraction"] <= 1.0
                fresh[count] += len(entry["fresh"])
        for count in counts:  # every slot starts fresh at most once per run of the query
            assert repeats <= fresh[count] <= int(count) * repeats
