import numpy as np
import pytest
import torch

from benchmarks.pipeline_runtime import run_pipeline, split_samples
from envs.hetero_pipeline.generator import training_profiles
from envs.hetero_pipeline.instance import Device, InstanceError, PipelineInstance, PipelinePlan
from envs.hetero_pipeline.profile_training import build_segments, full_model


@pytest.mark.parametrize("model_name", ["resnet18", "mobilenet_v2"])
def test_segments_compose_to_the_model(model_name):
    torch.set_num_threads(1)
    x = torch.randn(2, 3, 32, 32)
    model = full_model(model_name).eval()
    out = x
    for _, segment in build_segments(model_name):
        out = segment.eval()(out)
    with torch.no_grad():
        assert torch.allclose(out, model(x), atol=1e-5)


def test_split_samples_proportional_and_complete():
    assert split_samples(8, [1.0, 1.0]) == [(0, 4), (4, 8)]
    assert split_samples(8, [1.0, 0.125]) == [(0, 7), (7, 8)]
    ranges = split_samples(10, [0.3, 0.5, 0.2])
    assert ranges[0][0] == 0 and ranges[-1][1] == 10
    assert all(b > a for a, b in ranges)
    with pytest.raises(InstanceError, match="cannot be split"):
        split_samples(2, [1.0, 1.0, 1.0])


@pytest.mark.slow
def test_real_pipeline_runs_and_trains():
    # Two stages, the second data-parallel over two processes (3 processes, gloo, loopback).
    model = training_profiles()["mobilenet_v2"]  # times only shape the emulated links
    devices = (Device("a", 1.0, 1e11, 1000.0), Device("b", 0.5, 1e11, 1000.0),
               Device("c", 0.5, 1e11, 1000.0))
    instance = PipelineInstance(devices=devices, model=model, num_microbatches=2,
                                latency_s=0.001)
    plan = PipelinePlan.from_groups([(0,), (1, 2)], [0, 4, model.num_layers])
    result = run_pipeline(instance, plan, "mobilenet_v2", micro_batch_size=4, image_size=32,
                          iterations=2, timeout_s=120)
    assert result["processes"] == 3
    assert len(result["iteration_s"]) == 2 and all(t > 0 for t in result["iteration_s"])
    assert all(np.isfinite(result["losses"])) and result["losses"][0] > 0
    assert {r["stage"] for r in result["ranks"]} == {0, 1}
