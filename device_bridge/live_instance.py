"""Build the offloading instance the client plans with, from profiles and live measurements.

Shipped profiles were measured once on some CPU. Before planning, the client measures what
it actually has: the median time of each model run whole on this device, round-robin over
the batch's models (``device_scale = measured / profile whole-model median``), the server's own whole-model
median reported in its WELCOME (``server_speedup = profile median / server median``), and the
link (probe latency and bandwidth). Layer times keep the profile's proportions.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch

from device_bridge.graph_split import SplitModel
from envs.offload import Layer, OffloadInstance, OffloadJob, load_profile


def profile_whole_model_s(model: str) -> float:
    return float(load_profile(model)["provenance"]["whole_model_median_s"])


def measure_whole_model_s(splits: dict[str, SplitModel], runs: int = 5,
                          warmup: int = 1) -> dict[str, float]:
    """Median time of each model run whole through its split graph (the path the runtime
    uses), in round-robin over the models as a mixed batch runs them: a model measured
    back to back keeps its weights in cache and looks faster than it is in a batch."""
    samples: dict[str, list[float]] = {name: [] for name in splits}
    inputs = {name: torch.randn(split.input_shape) for name, split in splits.items()}
    for run in range(warmup + runs):
        for name, split in splits.items():
            start = time.perf_counter()
            split.run_range(0, split.num_segments, inputs[name])
            if run >= warmup:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def build_job(model: str, name: str, device_scale: float = 1.0,
              server_speedup: float | None = None, bytes_per_element: int = 4) -> OffloadJob:
    """One job from ``data/profiles/<model>.json``; bytes rescaled for fp16 uploads."""
    profile = load_profile(model)
    ratio = bytes_per_element / 4
    layers = []
    for layer in profile["layers"]:
        device_s = float(layer["device_s"])
        server_s = device_s / server_speedup if server_speedup else float(layer["server_s"])
        layers.append(Layer(layer["name"], device_s * device_scale, server_s,
                            int(layer["output_bytes"] * ratio)))
    return OffloadJob(name, int(profile["input_bytes"] * ratio), tuple(layers))


def build_instance(jobs: Sequence[tuple[str, str]], bandwidth_mbps: float, latency_s: float,
                   device_scale: dict[str, float] | None = None,
                   server_speedup: dict[str, float] | None = None,
                   bytes_per_element: int = 4) -> OffloadInstance:
    """``jobs`` is a list of ``(job name, model)``."""
    device_scale = device_scale or {}
    server_speedup = server_speedup or {}
    return OffloadInstance(bandwidth_mbps, latency_s, tuple(
        build_job(model, name, device_scale.get(model, 1.0), server_speedup.get(model),
                  bytes_per_element)
        for name, model in jobs))
