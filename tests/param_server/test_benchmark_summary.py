import pytest

from benchmarks.param_server import agent_cells, summarise


def test_summary_aggregates_every_seed():
    rows = []
    for seed, (hash_ms, two_ms) in enumerate([(10.0, 5.0), (10.0, 8.0)]):
        for name, value in (("hash", hash_ms), ("two_step", two_ms)):
            rows.append({"set": "generated", "instance": f"x/seed{seed}", "M": 4,
                         "scheduler": name, "iteration_ms": value, "remote_MB": value,
                         "plan_s": 0.0})
    small = [{"scheduler": "two_step", "gap": 0.1}, {"scheduler": "two_step", "gap": 0.3}]
    summary, targets = summarise(rows, small)
    two_step = next(r for r in summary if r["scheduler"] == "two_step" and r["M"] == 4
                    and r["set"] == "generated")
    assert two_step["time_vs_hash"] == pytest.approx((0.5 * 0.8) ** 0.5)
    assert two_step["time_range"] == "0.500-0.800"
    assert targets["two_step_time_reduction_vs_hash"]["value"] == pytest.approx(
        1 - (0.5 * 0.8) ** 0.5)
    assert targets["two_step_mean_gap_to_optimal_small"]["value"] == pytest.approx(0.2)
    for name in ("agent_mean_time_over_two_step", "agent_worst_time_over_two_step",
                 "agent_worst_cell_mean_time_over_two_step"):
        assert targets[name]["met"] is False, name


def test_a_missing_agent_is_reported_not_dropped():
    rows = [{"set": "generated", "instance": "x/seed0", "M": 4, "scheduler": name,
             "iteration_ms": 5.0, "remote_MB": 1.0, "plan_s": 0.0}
            for name in ("hash", "two_step")]
    rows.append({"set": "generated", "instance": "x/seed0", "M": 4, "scheduler": "agent",
                 "missing": True})
    cells = agent_cells(rows)
    assert cells == [{"set": "generated", "M": 4, "scheduler": "agent",
                      "mean_vs_two_step": "missing", "worst_vs_two_step": "missing",
                      "better": "missing", "plan_s": "missing"}]
    _, targets = summarise(rows, [{"scheduler": "two_step", "gap": 0.0}])
    assert targets["agent_mean_time_over_two_step"]["met"] is False


def test_agent_targets_use_paired_ratios_to_two_step():
    rows = []
    for seed, (two_ms, agent_ms) in enumerate([(10.0, 9.0), (10.0, 10.0)]):
        for name, value in (("hash", 20.0), ("two_step", two_ms), ("agent", agent_ms)):
            rows.append({"set": "generated", "instance": f"x/seed{seed}", "M": 4,
                         "scheduler": name, "iteration_ms": value, "remote_MB": 1.0,
                         "plan_s": 0.0})
    _, targets = summarise(rows, [{"scheduler": "two_step", "gap": 0.0}])
    assert targets["agent_mean_time_over_two_step"]["value"] == pytest.approx(0.9 ** 0.5)
    assert targets["agent_worst_time_over_two_step"]["value"] == pytest.approx(1.0)
    assert targets["agent_mean_time_over_two_step"]["met"] is True
