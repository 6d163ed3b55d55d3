"""Issue 24, case 6: a requested workload kind without its data is a one-line error naming the
kind and the flag that supplies it, before any training; a policy that leaves a workload
unfinished scores ``inf``, and ``fair`` failing as the reference is an error."""

from __future__ import annotations

import math

import pytest

from agents.spark_dag import train as train_spark_dag
from agents.spark_dag.policy import ScoringPolicy, fair_weights
from envs.spark_dag import Job, Stage
from heuristics.spark_dag import make_heuristic

TINY = ["--budget", "1", "--set", "cmaes.population=2", "--set", "cmaes.train_workloads=1",
        "--set", "cmaes.validation_workloads=1", "--set", "cmaes.workers=1"]


def test_decima_without_its_traces_is_refused_not_dropped() -> None:
    with pytest.raises(ValueError, match="'decima' has no data; give cmaes.decima_tpch"):
        train_spark_dag.make_workloads(4, 0, None, {}, ("synthetic", "decima"))


@pytest.mark.parametrize("kind", ["real", "trace", "live"])
def test_trace_kinds_without_traces_are_refused(kind: str) -> None:
    with pytest.raises(ValueError, match=f"'{kind}' has no data; give cmaes.real_traces"):
        train_spark_dag.make_workloads(2, 0, None, {}, (kind,))


def test_an_unknown_kind_is_refused_not_made_synthetic() -> None:
    with pytest.raises(ValueError, match="unknown synthetc"):
        train_spark_dag.make_workloads(2, 0, None, {}, ("synthetc",))


@pytest.mark.parametrize("kinds", ["decima", "synthetic,decima,real,batch"])
def test_the_cli_refuses_in_one_line_before_training(kinds: str, tmp_path,
                                                    capsys: pytest.CaptureFixture) -> None:
    from train_agents import main

    code = main(["train", "--env", "pipesched/SparkDagShop-v0", "--set", f"cmaes.kinds=[{kinds}]",
                 *TINY, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cmaes.decima_tpch=DIR" in err[-1]
    assert "kind 'decima' has no data" in err[-1]
    assert not list(tmp_path.iterdir())


def stalled_workload() -> train_spark_dag.Workload:
    jobs = [Job(f"j{k}", 0.0, [Stage(0, (), 4, compute_s=2.0)]) for k in range(3)]
    return train_spark_dag.Workload(jobs, {"num_executors": 2, "max_steps": 1}, seed=0)


def test_an_unfinished_workload_scores_inf_and_fair_cannot_be_the_reference() -> None:
    workload = stalled_workload()
    policy = ScoringPolicy(*fair_weights(), source_rule=True)
    assert train_spark_dag.objective(policy, workload) == math.inf
    assert train_spark_dag.objective(make_heuristic("fair"), workload) == math.inf
    with pytest.raises(RuntimeError, match="fair did not finish the workload of seed 0"):
        train_spark_dag.fair_objectives([workload])
    finished = train_spark_dag.Workload(workload.jobs, {"num_executors": 2}, seed=0)
    assert math.isfinite(train_spark_dag.objective(policy, finished))
