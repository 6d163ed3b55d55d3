"""benchmarks.spark_dag loads each shipped policy with its shape check for the section's
cluster size: a policy that does not fit is a failed row, a MISSING line and failed targets."""

from pathlib import Path

import pytest

from agents.spark_dag.policy import ShapeError, load_policy
from benchmarks import spark_dag
from benchmarks.report import Missing


def test_a_policy_is_refused_at_a_size_it_was_not_validated_for() -> None:
    validated = load_policy(spark_dag.POLICIES["agent_batch"]).shapes["executors"]
    assert 50 not in validated
    with pytest.raises(ShapeError, match="not 50"):
        spark_dag.scheduler("agent_batch", 50)
    assert spark_dag.scheduler("agent_batch", validated[0]) is not None


def test_runnable_turns_a_refused_policy_into_a_failed_row(capsys) -> None:
    missing = Missing()
    names, failed = spark_dag.runnable(["fair", "agent_batch"], 50, missing, "online",
                                       trace="t.json")
    assert names == ["fair"]
    assert [(row["section"], row["trace"], row["scheduler"]) for row in failed] == [
        ("online", "t.json", "agent_batch")]
    assert "validated for executors" in failed[0]["failed"]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("MISSING agent_batch in online trace t.json: ")
    assert missing.entries[0]["what"] == "agent_batch in online trace t.json"


def test_an_absent_policy_is_a_failed_row(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(spark_dag.POLICIES, "agent", tmp_path / "absent.json")
    names, failed = spark_dag.runnable(["sjf", "agent"], 50, Missing(), "online")
    assert names == ["sjf"] and failed[0]["failed"].endswith("absent.json not found")


def test_summaries_skip_failed_rows_and_agent_targets_fail_with_a_reason() -> None:
    rows = [{"scheduler": "fair", "seed": s, "mean_jct_s": 10.0, "executor_moves": 0}
            for s in (0, 1)]
    rows += [{"scheduler": "sjf", "seed": s, "mean_jct_s": 8.0, "executor_moves": 0}
             for s in (0, 1)]
    rows.append({"section": "online", "scheduler": "agent", "failed": "not validated"})
    table = spark_dag.summarize(rows)
    assert {r["scheduler"] for r in table} == {"fair", "sjf"}
    batch = [{"scheduler": "fair", "mean_over_bound": 1.2}]
    result = spark_dag.agent_targets({"online": ("agent", table)}, batch)
    for name in ("agent_vs_fair_online", "agent_vs_best_heuristic_online",
                 "agent_batch_makespan_vs_best_heuristic"):
        assert result[name]["met"] is False and result[name]["value"] is None
        assert "rows in" in result[name]["reason"], result[name]


def test_live_policies_without_a_trace_to_judge_on_fail_their_targets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(spark_dag.POLICIES, "agent_real", tmp_path / "absent.json")
    result = spark_dag.live_policy_targets(["tpch_sf1_standalone_e1-2.json"])
    assert result["agent_real_live_targets"]["reason"].endswith("absent.json not found")
    assert "agent_real_cluster_live_targets" not in result
