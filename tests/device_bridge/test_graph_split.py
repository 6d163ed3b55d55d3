"""Cut points, cut sizes and prefix/suffix correctness of the fx splitter."""

import json
from pathlib import Path

import pytest
import torch

from device_bridge.graph_split import SplitModel, build_model, weights_hash
from device_bridge.profiler import profile_model

PROFILE_DIR = Path(__file__).resolve().parents[2] / "data" / "profiles"
SHIPPED = ("alexnet", "vgg16", "resnet18", "mobilenet_v2", "googlenet", "resnet50",
           "inception_v3")


@pytest.fixture(scope="module")
def resnet18() -> SplitModel:
    return SplitModel("resnet18")


def test_resnet18_cut_points_and_real_sizes(resnet18: SplitModel):
    # 22 interior single-tensor cuts (+ input and output = 24 boundaries): stem conv1, bn1,
    # relu, maxpool, then after each block and its final relu, avgpool, flatten.
    assert len(resnet18.cut_points) == 22
    names = [c.node_name for c in resnet18.cut_points]
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert "layer1_0_conv1" not in names  # inside a residual block two tensors are live
    x = torch.randn(resnet18.input_shape)
    tensor = x
    assert resnet18.boundary_bytes(0) == x.numel() * 4 == 602112
    for cut in range(1, resnet18.num_segments + 1):
        tensor = resnet18.run_range(cut - 1, cut, tensor)
        assert tuple(tensor.shape) == resnet18.boundary_shape(cut)
        assert resnet18.boundary_bytes(cut) == tensor.numel() * tensor.element_size()
    assert resnet18.boundary_bytes(4) == 64 * 56 * 56 * 4  # after maxpool


def test_prefix_then_suffix_equals_full_model_every_cut(resnet18: SplitModel):
    x = torch.randn(resnet18.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full = resnet18.model(x)
    for cut in range(resnet18.num_segments + 1):
        middle = resnet18.run_range(0, cut, x)
        out = resnet18.run_range(cut, resnet18.num_segments, middle)
        torch.testing.assert_close(out, full, rtol=1e-4, atol=1e-5, msg=f"cut {cut}")


def test_seeded_weights_are_reproducible(resnet18: SplitModel):
    assert weights_hash(build_model("resnet18")) == weights_hash(resnet18.model)
    assert weights_hash(build_model("mobilenet_v2")) != weights_hash(resnet18.model)


def test_unknown_model_and_bad_range_raise(resnet18: SplitModel):
    with pytest.raises(ValueError, match="unknown model 'resnet19'"):
        SplitModel("resnet19")
    with pytest.raises(ValueError, match="cut range"):
        resnet18.range_module(3, 99)


def test_profile_structure_matches_split(resnet18: SplitModel):
    profile = profile_model("resnet18", repetitions=1, warmup=0)
    assert len(profile["layers"]) == resnet18.num_segments
    assert [layer["output_bytes"] for layer in profile["layers"]] == [
        resnet18.boundary_bytes(c) for c in range(1, resnet18.num_segments + 1)]
    prov = profile["provenance"]
    total = sum(layer["device_s"] for layer in profile["layers"])
    assert total == pytest.approx(prov["whole_model_median_s"], rel=1e-9)
    for layer in profile["layers"]:
        assert layer["server_s"] == pytest.approx(layer["device_s"] / 10.0)
    names = {n["name"] for n in profile["graph"]["nodes"]}
    for node in profile["graph"]["nodes"]:
        assert set(node["inputs"]) <= names


@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_profile_is_consistent(model: str):
    path = PROFILE_DIR / f"{model}.json"
    profile = json.loads(path.read_text())
    assert path.stat().st_size < 300_000
    assert profile["model"] == model
    prov = profile["provenance"]
    assert prov["threads"] == 1 and prov["repetitions"] >= 1
    assert all(layer["device_s"] > 0 and layer["output_bytes"] > 0
               for layer in profile["layers"])
    total = sum(layer["device_s"] for layer in profile["layers"])
    assert total == pytest.approx(prov["whole_model_median_s"], rel=1e-6)
