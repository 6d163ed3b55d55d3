import pytest

from benchmarks.param_server import summarise


def test_summary_aggregates_every_seed():
    rows = []
    for seed, (hash_ms, two_ms) in enumerate([(10.0, 5.0), (10.0, 8.0)]):
        for name, value in (("hash", hash_ms), ("two_step", two_ms)):
            rows.append({"set": "generated", "instance": f"x/seed{seed}", "M": 4,
                         "scheduler": name, "iteration_ms": value, "remote_MB": value,
                         "plan_s": 0.0})
    small = [{"scheduler": "two_step", "gap": 0.1}, {"scheduler": "two_step", "gap": 0.3}]
    summary, targets = summarise(rows, small, have_agent=False)
    two_step = next(r for r in summary if r["scheduler"] == "two_step" and r["M"] == 4
                    and r["set"] == "generated")
    assert two_step["time_vs_hash"] == pytest.approx((0.5 * 0.8) ** 0.5)
    assert two_step["time_range"] == "0.500-0.800"
    assert targets["two_step_time_reduction_vs_hash"]["value"] == pytest.approx(
        1 - (0.5 * 0.8) ** 0.5)
    assert targets["two_step_mean_gap_to_optimal_small"]["value"] == pytest.approx(0.2)
    assert targets["agent_time_over_two_step"]["met"] is False
