"""Every instance / profile JSON loader rejects a misspelt key by name instead of ignoring it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from envs.hetero_pipeline.instance import InstanceError as PipelineError
from envs.hetero_pipeline.instance import PipelineInstance, PipelinePlan, load_profile
from envs.offload import InstanceError as OffloadError
from envs.offload import OffloadInstance, available_models
from envs.offload import load_profile as load_offload_profile
from envs.param_server import InstanceError as ParamServerError
from envs.param_server import ParamServerInstance, ZipfTopicGenerator

from .hetero_pipeline.conftest import two_layer_instance

ROOT = Path(__file__).resolve().parents[1]


def _offload() -> dict:
    return {"bandwidth_mbps": 5.85, "latency_s": 0.01, "jobs": [
        {"name": "net", "input_bytes": 100,
         "layers": [{"name": "conv", "device_s": 0.1, "server_s": 0.01, "output_bytes": 50}]}]}


@pytest.mark.parametrize("mutate, where, key", [
    (lambda d: d.update(bandwith_mbps=5.0), "bad.json:", "'bandwith_mbps'"),
    (lambda d: d["jobs"][0].update(input_byte=3), "job 0 ('net'):", "'input_byte'"),
    (lambda d: d["jobs"][0]["layers"][0].update(sever_s=0.1), "layer 1 ('conv'):", "'sever_s'"),
    (lambda d: d["jobs"][0].update(input_name="x"), "job 0 ('net'):", "'input_name'"),
])
def test_offload_instance_names_the_unknown_key(tmp_path, mutate, where, key):
    data = _offload()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(OffloadError) as raised:
        OffloadInstance.from_json(path)
    message = str(raised.value)
    assert "\n" not in message
    assert str(path) in message and where in message and f"unknown field(s) {key}" in message


def test_misspelt_key_gets_a_hint():
    data = _offload()
    data["latency"] = data.pop("latency_s")
    with pytest.raises(OffloadError, match=r"'latency' \(did you mean 'latency_s'\?\)"):
        OffloadInstance.from_dict(data, "x.json")


def test_offload_profiles_reject_unknown_keys(tmp_path):
    for model in available_models():
        load_offload_profile(model)
    shipped = json.loads((ROOT / "data" / "profiles" / "alexnet.json").read_text())
    for mutate, key in [(lambda d: d.update(input_bytez=1), "'input_bytez'"),
                        (lambda d: d["layers"][0].update(devices_s=1.0), "'devices_s'"),
                        (lambda d: d["graph"]["nodes"][1].update(opp="x"), "'opp'")]:
        data = json.loads(json.dumps(shipped))
        mutate(data)
        (tmp_path / "alexnet.json").write_text(json.dumps(data))
        with pytest.raises(OffloadError, match=f"alexnet.json: .*unknown field\\(s\\) {key}"):
            load_offload_profile("alexnet", tmp_path)
        load_offload_profile.cache_clear()


@pytest.mark.parametrize("mutate, where, key", [
    (lambda d: d.update(machine=[]), "<json string>:", "'machine'"),
    (lambda d: d["blocks"].update(sample=[1]), "blocks:", "'sample'"),
    (lambda d: d["shards"].update(byte=[1]), "shards:", "'byte'"),
    (lambda d: d["machines"][2].update(memory=1), "machines[2]:", "'memory'"),
])
def test_param_server_instance_names_the_unknown_key(mutate, where, key):
    data = ZipfTopicGenerator(num_blocks=6, num_shards=8, num_machines=3)(
        np.random.default_rng(0)).to_dict()
    mutate(data)
    with pytest.raises(ParamServerError) as raised:
        ParamServerInstance.from_json(json.dumps(data))
    assert where in str(raised.value) and f"unknown field(s) {key}" in str(raised.value)


@pytest.mark.parametrize("mutate, where, key", [
    (lambda d: d.update(num_microbatch=4), "instance:", "'num_microbatch'"),
    (lambda d: d["devices"][1].update(sped=2.0), "devices[1]:", "'sped'"),
    (lambda d: d["model"].update(input_byte=1), "model:", "'input_byte'"),
    (lambda d: d["model"]["layers"][0].update(forward=1.0), "model.layers[0]:", "'forward'"),
])
def test_pipeline_instance_names_the_unknown_key(mutate, where, key):
    data = two_layer_instance().to_dict()
    mutate(data)
    with pytest.raises(PipelineError) as raised:
        PipelineInstance.from_json(json.dumps(data))
    assert where in str(raised.value) and f"unknown field(s) {key}" in str(raised.value)


def test_pipeline_plan_and_training_profile_reject_unknown_keys(tmp_path):
    with pytest.raises(PipelineError, match=r"plan.stages\[0\]: unknown field\(s\) 'stopp'"):
        PipelinePlan.from_json('{"stages": [{"devices": [0], "start": 0, "stopp": 2}]}')
    shipped = json.loads((ROOT / "data" / "profiles" / "training" / "resnet18.json").read_text())
    shipped["layers"][3]["param_byte"] = 1
    path = tmp_path / "resnet18.json"
    path.write_text(json.dumps(shipped))
    with pytest.raises(PipelineError, match=r"resnet18.json.layers\[3\]: unknown field\(s\) "
                                            r"'param_byte'"):
        load_profile(path)


def test_pipeline_runtime_cli_prints_one_line(tmp_path):
    data = two_layer_instance().to_dict()
    data["latency"] = 0.0
    instance = tmp_path / "instance.json"
    instance.write_text(json.dumps(data))
    plan = tmp_path / "plan.json"
    plan.write_text(PipelinePlan.from_groups([(0,), (1,)], [0, 1, 2]).to_json())
    done = subprocess.run([sys.executable, "-m", "runtimes.pipeline", "--instance", str(instance),
                           "--plan", str(plan), "--model", "resnet18"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"runtimes.pipeline: {instance}: instance: unknown field(s) 'latency' "
        "(did you mean 'latency_s'?); allowed: devices, latency_s, memory_factor, model, "
        "num_microbatches"]
