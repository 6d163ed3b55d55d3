import numpy as np
import pytest

from envs.hetero_pipeline.generator import HeteroPipelineGenerator
from envs.hetero_pipeline.instance import Device, LayerProfile, ModelProfile, PipelineInstance


@pytest.fixture(scope="session")
def generated_instances():
    generator = HeteroPipelineGenerator(num_devices=(3, 5), speed_ratio=(1.0, 8.0))
    rng = np.random.default_rng(7)
    return [generator(rng) for _ in range(12)]


def two_layer_instance(num_microbatches: int = 2) -> PipelineInstance:
    """Two devices of speed 1, layers F=1 s, B=2 s, 5e5-byte activations over 8 Mbps = 0.5 s."""
    layers = tuple(LayerProfile(f"l{i}", 1.0, 2.0, 5e5, 1e6, 1e6) for i in range(2))
    devices = (Device("a", 1.0, 1e9, 8.0), Device("b", 1.0, 1e9, 8.0))
    return PipelineInstance(devices=devices, model=ModelProfile("two", 0.0, layers),
                            num_microbatches=num_microbatches, latency_s=0.0)
