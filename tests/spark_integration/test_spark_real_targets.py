"""``benchmarks.spark_real``'s targets on hand-made rows (no Spark): the paired ratios, and a
driver whose jobs failed makes every target of its master fail with the reason instead of
looking fast."""

from __future__ import annotations

import pytest

from benchmarks.spark_real import failed_jobs_reason, prediction_target, ratio_targets


def _rows(failed: dict[str, int] | None = None, drivers: tuple[str, ...] = (
        "spark-fifo", "spark-fair", "fair", "sjf", "contention_free", "agent")) -> list[dict]:
    # two repeats; mean JCTs chosen so every ratio is known by hand
    jct = {"spark-fifo": 10.0, "spark-fair": 8.0, "fair": 9.0, "sjf": 7.0,
           "contention_free": 7.5, "agent": 6.0}
    failed = failed or {}
    return [{"master": "local", "scheduler": name, "repeat": rep,
             "mean_jct_s": jct[name] * (1 + rep), "failed_jobs": failed.get(name, 0) * rep}
            for rep in (0, 1) for name in drivers]


def test_ratios_and_targets_without_failures() -> None:
    ratios, targets = ratio_targets(_rows(), ["local"])
    by_name = {r["ratio"]: r for r in ratios}
    assert by_name["agent_over_spark_fifo"]["per_repeat"] == [0.6, 0.6]
    assert by_name["agent_over_spark_fair"]["mean"] == pytest.approx(0.75)
    assert by_name["agent_over_best_other_pipesched"]["mean"] == pytest.approx(6 / 7)
    assert by_name["best_pipesched_over_spark_fifo"]["mean"] == pytest.approx(0.6)
    assert all(t["met"] and "reason" not in t for t in targets.values())
    assert targets["agent_over_spark_fair_local"]["value"] == pytest.approx(0.75)


def test_failed_jobs_fail_every_target_of_the_master_with_the_reason() -> None:
    # the agent fails 3 jobs in repeat 1: its mean JCT (finished jobs only) is not comparable
    rows = _rows({"agent": 3})
    reason = failed_jobs_reason(rows, "local")
    assert reason == ("failed jobs (agent: 3): a mean JCT over the finished jobs only is not "
                      "comparable")
    _, targets = ratio_targets(rows, ["local"])
    assert len(targets) == 4
    for entry in targets.values():
        assert entry["met"] is False and entry["reason"] == reason
    assert failed_jobs_reason(rows, "standalone") is None


def test_a_driver_that_did_not_run_fails_its_targets() -> None:
    rows = _rows(drivers=("spark-fifo", "spark-fair", "fair", "sjf", "contention_free"))
    _, targets = ratio_targets(rows, ["local"])
    assert targets["agent_over_spark_fifo_local"]["met"] is False
    assert targets["agent_over_spark_fifo_local"]["reason"] == \
        "no repeat ran both agent and spark-fifo"
    assert targets["best_pipesched_over_spark_fifo_local"]["met"] is True


def test_prediction_target_counts_held_out_jobs_and_fails_without_them() -> None:
    calibration = [{"held_out": False, "rel_error": 0.9},
                   {"held_out": True, "rel_error": 0.1}, {"held_out": True, "rel_error": 0.3}]
    entry = prediction_target(calibration, _rows(), ["local"])
    assert entry["value"] == 0.5 and entry["met"] is False and "reason" not in entry
    assert prediction_target(calibration[:2], _rows(), ["local"])["met"] is True
    empty = prediction_target(calibration[:1], _rows(), ["local"])
    assert empty["met"] is False and empty["reason"] == "no held-out job was predicted"
    failed = prediction_target(calibration[:2], _rows({"sjf": 1}), ["local"])
    assert failed["met"] is False and failed["reason"].startswith("failed jobs (sjf: 1)")
