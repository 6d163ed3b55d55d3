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
