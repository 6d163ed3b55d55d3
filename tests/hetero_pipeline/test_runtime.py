import pytest
import torch

from envs.hetero_pipeline.generator import training_profiles
from envs.hetero_pipeline.instance import Device, InstanceError, PipelineInstance, PipelinePlan
from envs.hetero_pipeline.profile_training import build_segments, full_model
from envs.hetero_pipeline.wire import wire_bytes
from runtimes.pipeline import run_pipeline, split_samples


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
def test_real_pipeline_counts_the_framed_bytes(real_run):
    # the shipped profile: micro-batches of 8 images 64x64, as run below
    model = training_profiles()["mobilenet_v2"]
    devices = (Device("a", 0.5, 1e11, 100.0), Device("b", 0.25, 1e11, 100.0),
               Device("c", 0.1, 1e11, 100.0))
    instance = PipelineInstance(devices=devices, model=model, num_microbatches=2)
    layers = model.num_layers
    data_parallel = PipelinePlan.from_groups([(0,), (1, 2)], [0, 4, layers])
    one_device = PipelinePlan.from_groups([(1,)], [0, layers])   # no all-reduce to wait for
    runs = {name: run_pipeline(instance, plan, "mobilenet_v2", micro_batch_size=8,
                               image_size=64, iterations=2, timeout_s=120)
            for name, plan in (("data_parallel", data_parallel), ("one_device", one_device))}
    run = runs["data_parallel"]
    assert run.devices == [0, 1, 2] and run.stages == [0, 1, 1]
    ranges = [split_samples(8, [0.5]), split_samples(8, [0.25, 0.1])]
    # eth0 counters against the framed model: activations, gradients, stage 1's all-reduce
    assert run.wire_bytes[-1] == pytest.approx(wire_bytes(instance, data_parallel, ranges, 8),
                                               rel=0.10)
    assert sum(run.tx_bytes[r][-1] for r in range(3)) == pytest.approx(
        sum(run.rx_bytes[r][-1] for r in range(3)), rel=0.02)
    assert runs["one_device"].wire_bytes[-1] == 0
    # which plan is faster on this host is a timing question: benchmarks.pipeline_real ranks
    # the plans over repeated runs (a timed assertion here failed CI on a loaded host)
    assert all(loss > 0 for loss in run.losses)
