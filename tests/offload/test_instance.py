import json

import numpy as np
import pytest

from envs.offload import InstanceError, OffloadInstance, ProfileGenerator


def test_json_round_trip(tmp_path):
    instance = ProfileGenerator(min_jobs=4, max_jobs=4)(np.random.default_rng(3))
    path = tmp_path / "instance.json"
    text = instance.to_json(path)
    assert OffloadInstance.from_json(path) == instance
    assert OffloadInstance.from_json(text) == instance
    assert json.loads(text)["jobs"][0]["layers"][0].keys() == {
        "name", "device_s", "server_s", "output_bytes"}


def _valid() -> dict:
    return {"bandwidth_mbps": 5.85, "latency_s": 0.01, "jobs": [
        {"name": "net", "input_bytes": 100,
         "layers": [{"name": "conv", "device_s": 0.1, "server_s": 0.01, "output_bytes": 50}]}]}


def test_malformed_json_names_the_source(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"bandwidth_mbps": 1,')
    with pytest.raises(InstanceError, match="broken.json: malformed JSON"):
        OffloadInstance.from_json(path)


def test_negative_time_names_job_layer_and_field():
    data = _valid()
    data["jobs"][0]["layers"][0]["device_s"] = -0.5
    with pytest.raises(InstanceError, match=r"job 0 \('net'\), layer 1 \('conv'\): device_s"):
        OffloadInstance.from_json(json.dumps(data))


def test_missing_field_is_named():
    data = _valid()
    del data["jobs"][0]["layers"][0]["output_bytes"]
    with pytest.raises(InstanceError, match="layer 1 \\('conv'\\): missing field 'output_bytes'"):
        OffloadInstance.from_json(json.dumps(data))


def test_empty_job_list():
    data = _valid()
    data["jobs"] = []
    with pytest.raises(InstanceError, match="job list is empty"):
        OffloadInstance.from_json(json.dumps(data))


def test_wrong_type_and_bad_bandwidth():
    data = _valid()
    data["jobs"][0]["layers"][0]["server_s"] = "fast"
    with pytest.raises(InstanceError, match="server_s'?: expected a number"):
        OffloadInstance.from_json(json.dumps(data))
    data = _valid()
    data["bandwidth_mbps"] = 0
    with pytest.raises(InstanceError, match="bandwidth_mbps must be positive"):
        OffloadInstance.from_json(json.dumps(data))


def test_missing_file():
    with pytest.raises(InstanceError, match="cannot read file"):
        OffloadInstance.from_json("/nonexistent/instance.json")
