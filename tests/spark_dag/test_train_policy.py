"""The Spark policy trainer on the live-mode kind: a tiny run writes the model, its record and
curve, and reruns to the same weights (the shipped models' reproducibility in small)."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

from agents.spark_dag import train as train_spark_dag
from agents.spark_dag.policy import load_policy
from envs.spark_dag import NodeJob

TRACE = "tpch_sf1_local_e1-2.json"
ARGS = ["--kinds", "live", "--real-traces", TRACE, "--init",
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
    traces = train_spark_dag.load_wave_traces(train_spark_dag.TRACES)
    validation = train_spark_dag.make_workloads(
        2, train_spark_dag.VALIDATION_SEED, None, {TRACE: traces[TRACE]}, ("live",), (1.0, 1.5))
    fair = train_spark_dag.fair_objectives(validation)
    start = np.concatenate(train_spark_dag.INITS["shortest_work_x2"]())
    weights = []
    for name in ("a.json", "b.json"):
        out = tmp_path / name
        train_spark_dag.main([*ARGS, "--out", str(out)])
        policy = load_policy(out, executors=2)
        record = json.loads(out.read_text())["training"]
        assert record["kinds"] == ["live"] and record["init"] == "shortest_work_x2"
        history = record["history"]
        assert [h["generation"] for h in history] == [0, 1, 2]
        # generation 0 is the start, replayed here; the saved policy is the best validated one
        assert history[0]["validation_vs_fair"] == pytest.approx(
            train_spark_dag.play((start, False, validation, fair)))
        assert record["best_validation_vs_fair"] == min(h["validation_vs_fair"] for h in history)
        saved = np.concatenate([policy.score_weights, policy.limit_weights])
        assert train_spark_dag.play((saved, policy.source_rule, validation, fair)) == \
            pytest.approx(record["best_validation_vs_fair"])
        curve = plt.imread(out.with_suffix(".png"))
        assert curve.ndim == 3 and min(curve.shape[:2]) >= 100
        weights.append((policy.score_weights.tolist(), policy.limit_weights.tolist()))
    assert weights[0] == weights[1]
