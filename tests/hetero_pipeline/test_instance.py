import json

import pytest

from envs.hetero_pipeline.generator import TRAINING_PROFILE_DIR, training_profiles
from envs.hetero_pipeline.instance import (
    InstanceError,
    PipelineInstance,
    PipelinePlan,
    load_profile,
    validate_plan,
)

from .conftest import two_layer_instance


def test_instance_json_round_trip(generated_instances):
    for instance in generated_instances[:3]:
        assert PipelineInstance.from_json(instance.to_json()) == instance


def test_plan_json_round_trip():
    plan = PipelinePlan.from_groups([(0, 2), (1,)], [0, 3, 5])
    assert PipelinePlan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["devices"][0].update(speed=-1.0), "devices[0].speed"),
    (lambda d: d["devices"][1].update(bandwidth_mbps=0.0), "devices[1].bandwidth_mbps"),
    (lambda d: d["model"]["layers"][1].update(backward_s=float("nan")), "layers[1].backward_s"),
    (lambda d: d["model"]["layers"][0].pop("param_bytes"), "param_bytes"),
    (lambda d: d.update(num_microbatches=0), "num_microbatches"),
])
def test_bad_instance_names_the_field(mutate, message):
    data = two_layer_instance().to_dict()
    mutate(data)
    with pytest.raises(InstanceError, match=message.replace("[", r"\[").replace("]", r"\]")):
        PipelineInstance.from_dict(data)


def test_malformed_json_is_reported():
    with pytest.raises(InstanceError, match="malformed JSON"):
        PipelineInstance.from_json("{not json")


@pytest.mark.parametrize("plan, message", [
    (PipelinePlan.from_groups([(0,), (0,)], [0, 1, 2]), "two stages"),
    (PipelinePlan.from_groups([(0,), (5,)], [0, 1, 2]), "unknown device 5"),
    (PipelinePlan.from_groups([(0,)], [0, 1]), "covers layers"),
    (PipelinePlan.from_groups([(0,), (1,)], [0, 0, 2]), "empty layer range"),
])
def test_bad_plan_names_the_problem(plan, message):
    with pytest.raises(InstanceError, match=message):
        validate_plan(two_layer_instance(), plan)


def test_missing_profile_file_is_named(tmp_path):
    with pytest.raises(InstanceError, match="no such profile"):
        load_profile(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "x", "layers": [{"name": "a", "forward_s": 1}]}))
    with pytest.raises(InstanceError, match="backward_s"):
        load_profile(bad)


def test_shipped_training_profiles_have_provenance():
    profiles = training_profiles()
    assert {"resnet18", "mobilenet_v2", "vgg11"} <= set(profiles)
    for path in TRAINING_PROFILE_DIR.glob("*.json"):
        data = json.loads(path.read_text())
        for key in ("cpu", "torch", "threads", "repetitions", "date"):
            assert key in data["provenance"], (path, key)
        assert all(layer["backward_s"] > 0 and layer["forward_s"] > 0 for layer in data["layers"])
