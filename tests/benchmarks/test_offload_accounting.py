"""offload_live and offload_dag: a failed planner row counts against its target, unproven
optima and missing agents are MISSING lines, and a target with no data fails."""

from pathlib import Path

from benchmarks import offload_dag
from benchmarks.offload_live import live_targets, planners
from benchmarks.offload_live_protocol import protocol_targets
from benchmarks.report import Missing

CONCURRENCY = {"errors": 0}


def live_row(bandwidth: str, scheduler: str, status: str = "ok",
             measured_s: float = 1.0, predicted_s: float = 1.0) -> dict:
    row = {"bandwidth": bandwidth, "scheduler": scheduler, "status": status}
    if status == "ok":
        row.update(measured_s=measured_s, predicted_s=predicted_s,
                   measured_over_predicted=measured_s / predicted_s)
    return row


def test_a_failed_planner_row_fails_the_accuracy_target() -> None:
    rows = [live_row("4G", "joint", measured_s=0.7, predicted_s=0.7), live_row("4G", "neurosurgeon"),
            live_row("4G", "agent", "failed: planning: ValueError: 9 jobs > 6"),
            live_row("3G", "joint", "skipped: predicted 300.0 s > 120 s"),
            live_row("3G", "agent", "missing: agent not found")]
    targets = live_targets(rows, CONCURRENCY)
    accuracy = targets["max_abs_measured_vs_predicted"]
    assert accuracy["value"] == 0.0 and accuracy["met"] is False
    assert accuracy["reason"] == "1 of 3 rows failed"
    assert targets["joint_over_neurosurgeon_4g"]["met"] is True


def test_a_failed_4g_row_fails_the_speedup_target_with_its_reason() -> None:
    rows = [live_row("4G", "joint", "failed: planning: RuntimeError: boom"),
            live_row("4G", "neurosurgeon")]
    entry = live_targets(rows, CONCURRENCY)["joint_over_neurosurgeon_4g"]
    assert entry["met"] is False and entry["value"] is None
    assert entry["reason"] == "4G joint: failed: planning: RuntimeError: boom"


def test_no_rows_fail_every_row_target() -> None:
    targets = live_targets([], CONCURRENCY)
    assert targets["max_abs_measured_vs_predicted"]["met"] is False
    assert targets["joint_over_neurosurgeon_4g"]["reason"] == "no 4G joint row"


def _channel(overhead_high: float) -> dict:
    return {"overhead": overhead_high / 2, "overhead_low": 0.0, "overhead_high": overhead_high}


def test_channel_targets_judge_the_upper_ci_at_1_gbit_and_fail_without_the_link() -> None:
    gigabit = {"kinds": {"tls": _channel(0.04), "hmac-sha256": _channel(0.06)}}
    targets = protocol_targets({"gigabit_kernel": gigabit})
    assert targets["tls_channel_overhead_1mib_1gbit_upper95"]["met"] is True
    hmac_target = targets["hmac_channel_overhead_1mib_1gbit_upper95"]
    assert hmac_target["value"] == 0.06 and hmac_target["met"] is False
    for entry in protocol_targets({}).values():  # loopback only: no data never passes
        assert entry["met"] is False and "no 1 Gbit/s kernel link" in entry["reason"]


def test_a_missing_agent_is_a_missing_line(tmp_path: Path, capsys) -> None:
    missing = Missing()
    chosen, _ = planners(["joint", "agent"], tmp_path / "agent.zip", missing)
    assert chosen["agent"] is None and callable(chosen["joint"])
    assert capsys.readouterr().err.startswith("MISSING agent: ")
    assert missing.entries[0]["what"] == "agent"


def test_unproven_layer_level_optima_are_counted_not_dropped(capsys) -> None:
    missing = Missing()
    row = offload_dag.gap_row("tree, server 0", [(1.0, 1.0, True), (1.5, 1.0, False),
                                                 (1.1, 1.0, True)], missing)
    assert row["instances"] == 2 and row["unproven"] == 1
    assert abs(row["max_gap"] - 0.1) < 1e-12
    assert "1 of 3 instances not proven" in capsys.readouterr().err
    empty = offload_dag.gap_row("tree, server 0", [(1.5, 1.0, False)], Missing())
    assert empty["instances"] == 0 and empty["max_gap"] is None


def batch_row(scheduler: str, ratio: float, reference: str, instance: int = 0) -> dict:
    return {"instance": instance, "scheduler": scheduler, "ratio": ratio,
            "reference": reference}


def test_batch_summary_leaves_out_unproven_references() -> None:
    rows = [batch_row("joint", 1.0, "optimum"), batch_row("joint", 0.9, "unproven", 1)]
    summary = offload_dag.summarise(rows)
    assert summary[0]["instances"] == 1 and summary[0]["mean_ratio"] == 1.0


def test_dag_targets_without_proven_data_fail_with_reasons() -> None:
    single = [{"dads_fixed_s": 2.0, "optimum_s": 1.0, "proven": False}]
    layer = [{"case": "tree, server 0", "max_gap": None}]
    targets, best, best_random = offload_dag.dag_targets(single, layer, [], [])
    assert best is None and best_random is None
    assert all(entry["met"] is False for entry in targets.values())
    assert targets["dads_fixed_max_gap_to_single_job_optimum"]["reason"] == (
        "no single-job optimum proven")
    assert targets["best_scheduler_mean_ratio_small_dag_batches"]["reason"] == (
        "no small batch with a proven optimum")


def test_dag_targets_over_proven_rows() -> None:
    single = [{"dads_fixed_s": 1.0, "optimum_s": 1.0, "proven": True},
              {"dads_fixed_s": 3.0, "optimum_s": 1.0, "proven": False}]
    layer = [{"case": "tree, server 0", "max_gap": 0.0}]
    small = [{"scheduler": "joint", "mean_ratio": 1.02},
             {"scheduler": "layer_level", "mean_ratio": 0.9}]
    targets, best, _ = offload_dag.dag_targets(single, layer, small, [])
    assert targets["dads_fixed_max_gap_to_single_job_optimum"]["met"] is True
    assert best == "joint" and targets["best_scheduler_mean_ratio_small_dag_batches"]["met"]
