"""The bed section reads the link law measured at the rate a trace was recorded at."""

import json

import pytest

from benchmarks import spark_dag


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(spark_dag, "TRACES", tmp_path)
    monkeypatch.setattr(spark_dag, "LINK_LAW", tmp_path / "law.json")
    bed = {"workers": 2, "cores_per_worker": 2, "link_mbps": 10.0, "cpus_per_worker": 0.9}
    (tmp_path / "bed.json").write_text(json.dumps({"jobs": [], "source": {"bed": bed}}))
    (tmp_path / "plain.json").write_text(json.dumps({"jobs": [], "source": {}}))
    return tmp_path


def test_a_bed_trace_gets_its_links_at_the_measured_law(shipped):
    law = {"rates": {"10": {"flows_per_link": 1.25, "beta": 0.1}}}
    (shipped / "law.json").write_text(json.dumps(law))
    assert spark_dag.bed_network("bed.json") == {"links": 2, "capacity": 2.5, "beta": 0.1,
                                                 "link_mbps": 10.0}
    assert spark_dag.bed_network("plain.json") is None


def test_a_rate_without_a_measured_law_names_the_command(shipped):
    with pytest.raises(ValueError, match="law.json not found: run python -m benchmarks"):
        spark_dag.bed_network("bed.json")
    (shipped / "law.json").write_text(json.dumps({"rates": {"50": {}}}))
    with pytest.raises(ValueError, match="no law measured at 10 Mbit/s.*--rates 10 --ship"):
        spark_dag.bed_network("bed.json")


def _cell(trace: str, mode: str, link_mbps: float, slots: int, ratio: float,
          uncontended: float) -> dict:
    return {"trace": trace, "mode": mode, "link_mbps": link_mbps, "slots_per_link": slots,
            "contention_free_over_fair": ratio, "uncontended": uncontended}


def test_each_bed_trace_is_judged_at_its_own_recorded_regime():
    summary = [_cell(trace, mode, rate / factor, slots, ratio, 1.0)
               for mode in ("online", "batch")
               for trace, rate, ratio in (("bed10.json", 10.0, 0.95), ("bed5.json", 5.0, 0.85))
               for factor in (1, 2) for slots in (2, 4)]
    # a slower scaled regime of the 10 Mbit/s trace must not stand in for the 5 Mbit/s trace
    summary.append(_cell("bed10.json", "batch", 2.5, 2, 0.5, 0.8))
    targets = spark_dag.bed_targets(summary)
    assert targets["contention_free_over_fair_online_bed_10mbit"]["value"] == 0.95
    assert targets["contention_free_over_fair_online_bed_5mbit"]["value"] == 0.85
    assert not targets["contention_free_over_fair_batch_bed_10mbit"]["met"]
    assert targets["contention_free_over_fair_batch_bed_5mbit"]["met"]
    best = targets["contention_free_gain_from_the_network_batch_best_regime"]
    assert best["value"] == 0.5 / 0.8 and best["regime"] == "bed10.json: 2.5 Mbit/s, 2 slots per link"
