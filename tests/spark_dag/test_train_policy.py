"""The Spark policy trainer on the live-mode kind: a tiny run writes the model, its record and
curve, and reruns to the same weights (the shipped models' reproducibility in small)."""

import json

from agents import train_spark_dag
from agents.spark_policy import load_policy
from envs.spark_dag import NodeJob

ARGS = ["--kinds", "live", "--real-traces", "tpch_sf1_local_e1-2.json", "--init",
        "shortest_work_x2", "--generations", "2", "--population", "4", "--train-workloads", "2",
        "--validation-workloads", "2", "--validate-every", "1", "--workers", "1",
        "--trace-load-min", "1.0", "--trace-load-max", "1.5"]


def test_live_workloads_are_node_streams_at_the_asked_load():
    traces = {"tpch_sf1_local_e1-2.json": []}
    workloads = train_spark_dag.make_workloads(3, 0, None, traces, ("live",), (1.5, 1.5))
    assert all(isinstance(job, NodeJob) for w in workloads for job in w.jobs)
    assert all(w.executors == 2 and 0.2 <= w.live_contention <= 0.6 for w in workloads)
    assert all(15 <= len(w.jobs) <= 40 for w in workloads)


def test_tiny_live_training_is_reproducible(tmp_path):
    weights = []
    for name in ("a.json", "b.json"):
        out = tmp_path / name
        train_spark_dag.main([*ARGS, "--out", str(out)])
        policy = load_policy(out, executors=2)
        record = json.loads(out.read_text())["training"]
        assert record["kinds"] == ["live"] and record["init"] == "shortest_work_x2"
        assert [h["generation"] for h in record["history"]] == [0, 1, 2]
        assert record["best_validation_vs_fair"] <= record["history"][0]["validation_vs_fair"]
        assert out.with_suffix(".png").stat().st_size > 0
        weights.append((policy.score_weights.tolist(), policy.limit_weights.tolist()))
    assert weights[0] == weights[1]
