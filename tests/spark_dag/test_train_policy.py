"""The Spark policy trainer (``algo: cmaes``) on the live-mode kind: a tiny run through
``train_agents.py train`` writes the model, its record and curve, and reruns to the same
weights (the shipped models' reproducibility in small)."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

from agents.spark_dag import train as train_spark_dag
from agents.spark_dag.policy import load_policy
from envs import PROBLEMS
from envs.spark_dag import NodeJob
from train_agents import main

TRACE = "tpch_sf1_local_e1-2.json"
ENV_ID = PROBLEMS["spark_dag"].env_id
SETS = {"kinds": "[live]", "real_traces": f"[{TRACE}]", "init": "shortest_work_x2",
        "population": 4, "train_workloads": 2, "validation_workloads": 2, "validate_every": 1,
        "workers": 1, "trace_load_min": 1.0, "trace_load_max": 1.5}
ARGS = [word for key, value in SETS.items() for word in ("--set", f"cmaes.{key}={value}")]


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
    for name in ("a", "b"):
        assert main(["train", "--env", ENV_ID, *ARGS, "--budget", "2",
                     "--out", str(tmp_path / name)]) == 0
        out = tmp_path / name / ENV_ID.replace("/", "_") / "seed0" / "policy.json"
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
