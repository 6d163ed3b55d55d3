"""The sweep runner: the same rows locally and on Spark for the same seeds; a failed task is
retried and reported, a task failing every attempt stops the run with one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from agents.compare import SHIPPED_MODELS
from agents.sweep_tasks import model_payload
from spark_integration.runner import RunnerError, decode, encode, run_tasks

ROOT = Path(__file__).resolve().parents[2]
TIMING = {"plan_seconds"}


def _without_timing(rows: list[list[dict]]) -> list[list[dict]]:
    return [[{k: v for k, v in row.items() if k not in TIMING} for row in task] for task in rows]


@pytest.mark.parametrize("env_id, with_agent", [("pipesched/ParamServer-v0", False),
                                                ("pipesched/HeteroPipeline-v0", True)])
def test_spark_rows_equal_local_rows(spark, env_id: str, with_agent: bool) -> None:
    models = model_payload({"agent": str(SHIPPED_MODELS[env_id])} if with_agent else {})
    payloads = [{"env_id": env_id, "seeds": seeds, "models": models} for seeds in ([0, 1], [2])]
    task = "agents.sweep_tasks:compare_episodes"
    local = run_tasks(task, payloads)
    on_spark = run_tasks(task, payloads, engine="spark", spark=spark)
    assert [row["seed"] for row in local.flat_rows()] == [0, 1, 2]
    assert ("agent" in local.rows[0][0]["objective"]) == with_agent
    assert _without_timing(on_spark.rows) == _without_timing(local.rows)
    assert len(on_spark.reports) == 2 and not on_spark.retried


def test_payloads_are_plain_data() -> None:
    assert decode(encode({"a": [1, 2.5, None], "b": b"\x00\xff"})) == {"a": [1, 2.5, None],
                                                                       "b": b"\x00\xff"}
    with pytest.raises(TypeError, match="plain data"):
        encode({"instance": object()})
    with pytest.raises(RunnerError, match="module:function"):
        run_tasks("os:system", [{}])


def test_failed_task_is_retried_and_reported_and_a_hopeless_one_stops_the_run() -> None:
    # own process: local mode retries only with local[N,F], which the runner asks for
    script = textwrap.dedent("""
        from spark_integration.runner import RunnerError, run_tasks
        payloads = [{"value": v, "flaky": v == 1} for v in range(3)]
        result = run_tasks("tests.spark_integration.flaky_tasks:fail_first_attempt", payloads,
                           engine="spark", master="local[2]", quiet=True)
        print("ROWS", result.flat_rows())
        print("RETRIED", [(r.index, r.attempt) for r in result.retried])
        try:
            run_tasks("tests.spark_integration.flaky_tasks:always_fail", [{"value": 7}],
                      engine="spark", master="local[2]")
        except RunnerError as error:
            print("ERROR", str(error).count(chr(10)), error)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in done.stdout.splitlines()
             if line.split(" ", 1)[0] in ("ROWS", "RETRIED", "ERROR")}
    assert lines["ROWS"] == "[{'value': 0}, {'value': 1}, {'value': 2}]", done.stderr[-2000:]
    assert lines["RETRIED"] == "[(1, 1)]"
    assert lines["ERROR"].startswith("0 ") and "injected failure of task 7" in lines["ERROR"]


def test_warmup_labels_through_the_runner_equal_the_in_process_ones(spark) -> None:
    from agents.algos.imitation import collect_labels, offload_demonstrations
    from agents.config import load_config
    from heuristics.offload import HEURISTICS

    env_id = "pipesched/DnnOffload-v0"
    env_kwargs = load_config(env_id).env_kwargs
    common = {"env_id": env_id, "env_kwargs": env_kwargs,
              "expert": "heuristics.offload:neurosurgeon"}
    expected = offload_demonstrations(env_id, env_kwargs, HEURISTICS["neurosurgeon"], 12, 500)
    task = "agents.sweep_tasks:offload_demonstrations"
    def on_spark(task: str, payloads: list[dict]) -> list[dict]:
        return run_tasks(task, payloads, "spark", spark=spark).flat_rows()

    collected = collect_labels(on_spark, task, common, 12, 500)  # two tasks: 10 + 2 episodes
    assert collected[0].keys() == expected[0].keys()
    for key in expected[0]:
        assert np.array_equal(collected[0][key], expected[0][key])
    assert np.array_equal(collected[1], expected[1]) and np.array_equal(collected[2], expected[2])


def test_a_foreign_session_is_not_taken_over(spark) -> None:
    with pytest.raises(RunnerError, match="pass it as run_tasks"):
        run_tasks("agents.sweep_tasks:compare_episodes", [], "spark", "local[2]")
    assert spark.sparkContext._jsc is not None  # still running
