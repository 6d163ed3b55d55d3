"""Build the offloading instance the client plans with, from profiles and live measurements.

Two ways to get the device's layer times:

- **In situ** (``profile_device``): every segment of every model in the batch is timed right
  here, by the runtime's own graph modules, with the torch thread setting the batch will run
  with, round-robin over the models as a mixed batch runs them; segment medians are scaled
  to sum to the whole-model median measured in the same loop. The prediction then rests on
  times measured in the conditions of the run.
- **Calibrated shipped profiles**: the median time of each model run whole on this device,
  round-robin (``device_scale = measured / profile whole-model median``), with the shipped
  profile's per-layer proportions.

Either way the server's own whole-model median reported in its WELCOME gives
``server_speedup = device whole-model median / server median``, and the link is probed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch

from device_bridge.graph_split import SplitModel
from device_bridge.profiler import DEFAULT_SERVER_SPEEDUP, boundary_inputs, segment_layers
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


def profile_device(splits: dict[str, SplitModel], repetitions: int = 10,
                   warmup: int = 2) -> dict[str, dict]:
    """Profiles of the batch's models measured on this device now (the ``layers`` part of
    the ``data/profiles`` format plus ``provenance.whole_model_median_s``).

    Each repetition runs, for every model in turn, the whole model and then each segment
    on its real input tensor, with the caller's torch thread setting; the first ``warmup``
    repetitions are not timed."""
    if repetitions < 1 or warmup < 0:
        raise ValueError(f"need repetitions >= 1 and warmup >= 0, got {repetitions}, {warmup}")
    boundaries = {name: boundary_inputs(split) for name, split in splits.items()}
    whole: dict[str, list[float]] = {name: [] for name in splits}
    segments: dict[str, list[list[float]]] = {
        name: [[] for _ in range(split.num_segments)] for name, split in splits.items()}
    for repetition in range(warmup + repetitions):
        timed = repetition >= warmup
        for name, split in splits.items():
            tensors = boundaries[name]
            start = time.perf_counter()
            split.run_range(0, split.num_segments, tensors[0])
            if timed:
                whole[name].append(time.perf_counter() - start)
            for segment in range(1, split.num_segments + 1):
                start = time.perf_counter()
                split.run_range(segment - 1, segment, tensors[segment - 1])
                if timed:
                    segments[name][segment - 1].append(time.perf_counter() - start)
    profiles = {}
    for name, split in splits.items():
        whole_s = statistics.median(whole[name])
        segment_s = [statistics.median(samples) for samples in segments[name]]
        calibration = whole_s / sum(segment_s)
        profiles[name] = {
            "model": name, "input_bytes": split.boundary_bytes(0),
            "provenance": {"whole_model_median_s": whole_s, "calibration_factor": calibration,
                           "threads": torch.get_num_threads(), "repetitions": repetitions,
                           "warmup": warmup, "in_situ": True},
            "layers": segment_layers(split, segment_s, calibration, DEFAULT_SERVER_SPEEDUP)}
    return profiles


def build_job(model: str, name: str, device_scale: float = 1.0,
              server_speedup: float | None = None, bytes_per_element: int = 4,
              profile: dict | None = None) -> OffloadJob:
    """One job from ``profile`` (default ``data/profiles/<model>.json``); bytes rescaled for
    fp16 uploads."""
    profile = profile or load_profile(model)
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
                   bytes_per_element: int = 4,
                   profiles: dict[str, dict] | None = None) -> OffloadInstance:
    """``jobs`` is a list of ``(job name, model)``; ``profiles`` (e.g. from
    ``profile_device``) replace the shipped ones for the models they name."""
    device_scale = device_scale or {}
    server_speedup = server_speedup or {}
    profiles = profiles or {}
    return OffloadInstance(bandwidth_mbps, latency_s, tuple(
        build_job(model, name, device_scale.get(model, 1.0), server_speedup.get(model),
                  bytes_per_element, profiles.get(model))
        for name, model in jobs))
