"""The reference-simulator drivers refuse a scheduler they would not run as asked, in one
line and before loading the reference simulator (no checkout needed here), and
spark_reference fails a target whose seeds finished different numbers of jobs and reports the
agent against fair and the best heuristic inside each reference."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.spark_reference import (
    agent_ratios,
    inside_table,
    paired_ratios,
    policy_scheduler,
    reference_schedulers,
    run_reference,
    summarize,
    targets,
)
from envs.spark_dag import Job, Stage

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
DRIVERS = ("decima_driver.py", "sss_driver.py")


def spec(*schedulers: str) -> dict:
    return {"executors": 50, "moving_delay_ms": 2000, "warmup_ms": 1000, "tpch_dir": "/none",
            "runs": [{"scheduler": name, "seed": 0, "jobs": [["2g", 3, 0]]}
                     for name in schedulers]}


def run_driver(driver: str, tmp_path: Path, content: dict | str) -> subprocess.CompletedProcess:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(content if isinstance(content, str) else json.dumps(content))
    checkout = tmp_path / "no-checkout"  # absent: a driver that loads it fails otherwise
    return subprocess.run([sys.executable, str(BENCHMARKS / driver), str(checkout),
                           str(spec_path), str(tmp_path / "out.json")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("scheduler", "says"), [
    ("srpt", "unknown scheduler 'srpt'"), ("FIFO", "unknown scheduler 'FIFO'"),
    ("policy:", "unknown scheduler 'policy:'"), ("sjf", "unknown scheduler 'sjf'"),
    ("heuristic:shortest", "unknown heuristic 'shortest'"),
    ("policy:models/no_such_policy.json", "no_such_policy.json: cannot read file"),
    ("policy:models/spark_dag_policy_real.json", "validated for executors [2], not 50")])
def test_unknown_scheduler_is_refused_in_one_line(driver: str, scheduler: str, says: str,
                                                  tmp_path: Path) -> None:
    done = run_driver(driver, tmp_path, spec("fair", scheduler))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "runs[1].scheduler" in lines[0], lines
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("driver", DRIVERS)
def test_malformed_spec_is_refused_in_one_line(driver: str, tmp_path: Path) -> None:
    for content, says in (("{not json", "cannot read the spec"),
                          ({"runs": []}, "missing field 'executors'")):
        done = run_driver(driver, tmp_path, content)
        assert done.returncode == 2
        assert done.stderr.strip().count("\n") == 0 and says in done.stderr, done.stderr


@pytest.mark.parametrize("driver", DRIVERS)
def test_accepted_schedulers_pass_the_check_and_reach_the_simulator(driver: str,
                                                                    tmp_path: Path) -> None:
    """Accepted names go on to load the reference simulator, absent here."""
    done = run_driver(driver, tmp_path, spec("fair", "fifo", "heuristic:sjf",
                                             "policy:models/spark_dag_policy.json"))
    assert done.returncode == 1
    assert "ModuleNotFoundError" in done.stderr


def test_spark_reference_reports_the_drivers_refusal(tmp_path: Path) -> None:
    jobs = [Job("2g/q3", 0.0, [Stage(0, (), 1, compute_s=1.0)])]
    with pytest.raises(RuntimeError, match=r"decima-sim driver exited 2: .*unknown scheduler "
                                           r"'srpt'"):
        run_reference("decima-sim", tmp_path, tmp_path, jobs, ["fair", "srpt"], 0)


def row(simulator: str, scheduler: str, seed: int, jct: float, done: int,
        total: int = 10) -> dict:
    return {"simulator": simulator, "scheduler": scheduler, "seed": seed, "mean_jct_s": jct,
            "jobs_done": done, "jobs_total": total, "cpu_s": 1.0, "decisions": 5}


def test_jobs_done_mismatch_fails_the_target_with_its_reason() -> None:
    rows = [row("pipesched", "fair", 0, 100.0, 10), row("decima-sim", "fair", 0, 100.0, 10),
            # seed 1: the reference finished fewer jobs, so its mean JCT looks shorter
            row("pipesched", "fair", 1, 100.0, 10), row("decima-sim", "fair", 1, 60.0, 7)]
    ratios = paired_ratios(rows)
    entry = next(r for r in ratios if r["reference"] == "decima-sim")
    assert entry["seeds"] == 1 and entry["mean_jct_s_ratio"] == 1.0
    result = targets(ratios)["fair_jct_ratio_vs_decima-sim"]
    assert result["met"] is False
    assert result["reason"] == ("jobs_done differs on 1 seed(s): seed 1: pipesched 10/10, "
                                "decima-sim 7/10 jobs done")
    fair_cpu = targets(ratios)["episode_cpu_ratio_vs_decima-sim"]
    assert fair_cpu["met"] is False and "jobs_done differs" in fair_cpu["reason"]


def test_matching_jobs_done_compares_the_means() -> None:
    rows = [row("pipesched", "fifo", s, 105.0, 10) for s in (0, 1)] + [
        row("spark-sched-sim", "fifo", s, 100.0, 10) for s in (0, 1)]
    result = targets(paired_ratios(rows))
    assert result["fifo_jct_ratio_vs_spark-sched-sim"]["met"] is True
    assert result["fifo_jct_ratio_vs_spark-sched-sim"]["value"] == pytest.approx(1.05)
    assert result["fair_jct_ratio_vs_decima-sim"]["reason"] == "no decima-sim rows for fair"
    table = {(r["simulator"], r["scheduler"]): r for r in summarize(rows)}
    assert table[("pipesched", "fifo")]["jobs_done"] == "20/20"


def test_the_shipped_policy_is_named_as_the_drivers_read_it() -> None:
    from agents.spark_dag.policy import SHIPPED

    agent = policy_scheduler(SHIPPED["online"])
    assert agent == "policy:models/spark_dag_policy.json"
    names = reference_schedulers(agent)
    assert names[:3] == ["fair", "fifo", agent] and "heuristic:sjf" in names


def test_agent_is_paired_with_fair_and_the_best_heuristic_inside_each_reference() -> None:
    agent = "policy:models/spark_dag_policy.json"
    jct = {"fair": (100.0, 120.0), "fifo": (150.0, 170.0), "heuristic:sjf": (80.0, 100.0),
           agent: (72.0, 95.0)}
    rows = [row("decima-sim", name, seed, value, 10)
            for name, values in jct.items() for seed, value in enumerate(values)]
    table = {r["scheduler"]: r for r in inside_table(rows, reference_schedulers(agent))}
    assert table["heuristic:sjf"]["mean_jct_s"] == 90.0 and table[agent]["seeds"] == 2
    result = {r["versus"]: r for r in agent_ratios(rows, agent)}
    assert result["best_heuristic"]["scheduler"] == "heuristic:sjf"
    assert result["best_heuristic"]["mean_jct_s_ratio"] == pytest.approx((0.9 + 0.95) / 2)
    assert result["fair"]["mean_jct_s_ratio"] == pytest.approx((0.72 + 95 / 120) / 2, abs=1e-3)
    met = targets([], agent_ratios(rows, agent))["agent_jct_ratio_vs_fair_in_decima-sim"]
    assert met["met"] is True and met["value"] == result["fair"]["mean_jct_s_ratio"]
    rows[-1] = row("decima-sim", agent, 1, 60.0, 9)  # the agent left a job unfinished
    missed = targets([], agent_ratios(rows, agent))
    assert missed["agent_jct_ratio_vs_fair_in_decima-sim"]["met"] is False
    assert "jobs_done differs on 1 seed(s)" in missed[
        "agent_jct_ratio_vs_fair_in_decima-sim"]["reason"]
