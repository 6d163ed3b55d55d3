"""Prefix + suffix == full model at every cut point of every shipped model.

The graphs are traced at the profile's input size; the check runs a smaller image through
them (all these models pool adaptively before the classifier), which exercises exactly the
same split graph modules at a fraction of the cost.
"""

import json
from pathlib import Path

import pytest
import torch

from device_bridge.graph_split import SplitModel

PROFILE_DIR = Path(__file__).resolve().parents[2] / "data" / "profiles"
SMALL_INPUT = {"alexnet": 64, "vgg16": 32, "resnet50": 64,  # resnet18: test_graph_split
               "mobilenet_v2": 64, "googlenet": 64, "inception_v3": 96}


@pytest.mark.parametrize("model", sorted(SMALL_INPUT))
def test_every_cut_of_every_model(model: str):
    split = SplitModel(model)
    profile = json.loads((PROFILE_DIR / f"{model}.json").read_text())
    assert len(profile["layers"]) == split.num_segments
    assert [layer["output_bytes"] for layer in profile["layers"]] == [
        split.boundary_bytes(cut) for cut in range(1, split.num_segments + 1)]
    side = SMALL_INPUT[model]
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        full = split.model(x)
    for cut in range(split.num_segments + 1):
        out = split.run_range(cut, split.num_segments, split.run_range(0, cut, x))
        torch.testing.assert_close(out, full, rtol=1e-4, atol=1e-5, msg=f"{model} cut {cut}")
