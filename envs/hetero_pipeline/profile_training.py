"""Training profiler: forward AND backward time, stashed activations and parameters per layer.

``python -m envs.hetero_pipeline.profile_training --models resnet18,mobilenet_v2,vgg11``
writes ``data/profiles/training/<model>.json``. A "layer" here is a pipeline segment: a
contiguous block of a torchvision model (a residual block, an inverted-residual group, a VGG
conv block) whose composition in order is exactly the model's forward pass
(:func:`build_segments`). The same segments are what :mod:`runtimes.pipeline_worker` runs,
so a simulated plan and a real pipeline cut the model at the same places.

Per segment and per micro-batch it measures, on one CPU thread (the reference speed 1.0):

- ``forward_s``: median wall time of ``segment(x)`` with autograd recording;
- ``backward_s``: median wall time of ``out.backward(grad)`` (input and parameter gradients);
- ``activation_bytes``: bytes of the segment's output (what is sent to the next stage, and
  the size of the gradient sent back);
- ``stash_bytes``: bytes autograd saves for backward during the forward pass (counted with
  ``torch.autograd.graph.saved_tensors_hooks``): what a stage keeps per in-flight micro-batch;
- ``param_bytes``: bytes of the segment's parameters (fp32).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import torchvision
from torch import nn

from envs.machine import cpu_model

SUPPORTED_MODELS = ("resnet18", "mobilenet_v2", "vgg11")
#: relative to the current directory: run from a checkout's root to replace the shipped profiles
DEFAULT_OUT = Path("data/profiles/training")


def build_segments(model_name: str, num_classes: int = 10) -> list[tuple[str, nn.Module]]:
    """The model as an ordered list of ``(name, module)`` whose composition is its forward."""
    torch.manual_seed(0)
    if model_name == "resnet18":
        model = torchvision.models.resnet18(num_classes=num_classes)
        segments = [("stem", nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool))]
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            for index, block in enumerate(getattr(model, stage)):
                segments.append((f"{stage}.{index}", block))
        segments.append(("head", nn.Sequential(model.avgpool, nn.Flatten(1), model.fc)))
        return segments
    if model_name == "mobilenet_v2":
        model = torchvision.models.mobilenet_v2(num_classes=num_classes)
        groups = [(0, 1), (2, 3), (4, 5, 6), (7, 8, 9, 10), (11, 12, 13), (14, 15, 16), (17,),
                  (18,)]
        segments = [(f"features.{g[0]}-{g[-1]}" if len(g) > 1 else f"features.{g[0]}",
                     nn.Sequential(*(model.features[i] for i in g))) for g in groups]
        segments.append(("head", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                               model.classifier)))
        return segments
    if model_name == "vgg11":
        model = torchvision.models.vgg11(num_classes=num_classes)
        cuts = [(0, 3), (3, 6), (6, 8), (8, 11), (11, 13), (13, 16), (16, 18), (18, 21)]
        segments = [(f"features.{a}-{b - 1}", model.features[a:b]) for a, b in cuts]
        segments.append(("fc6", nn.Sequential(model.avgpool, nn.Flatten(1),
                                              *model.classifier[0:3])))
        segments.append(("fc7", model.classifier[3:6]))
        segments.append(("fc8", model.classifier[6:7]))
        return segments
    raise ValueError(f"unknown model {model_name!r}; supported: {', '.join(SUPPORTED_MODELS)}")


def full_model(model_name: str, num_classes: int = 10) -> nn.Module:
    """The unsplit torchvision model with the same seeded weights as :func:`build_segments`."""
    torch.manual_seed(0)
    constructor = {"resnet18": torchvision.models.resnet18,
                   "mobilenet_v2": torchvision.models.mobilenet_v2,
                   "vgg11": torchvision.models.vgg11}.get(model_name)
    if constructor is None:
        raise ValueError(f"unknown model {model_name!r}; supported: {', '.join(SUPPORTED_MODELS)}")
    return constructor(num_classes=num_classes)


def _stashed_bytes(segment: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    seen: dict[int, int] = {}
    # Saved weights (also as views such as ``weight.t()``) are counted in param_bytes.
    param_storages = {p.untyped_storage().data_ptr() for p in segment.parameters()}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in param_storages:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = segment(x)
    return out, sum(seen.values())


def profile_model(model_name: str, batch_size: int = 8, image_size: int = 64,
                  repetitions: int = 7, warmup: int = 2, threads: int = 1) -> dict:
    """Measure every segment of ``model_name``; returns the JSON-ready profile dict."""
    torch.set_num_threads(threads)
    segments = build_segments(model_name)
    x = torch.randn(batch_size, 3, image_size, image_size)
    layers = []
    for index, (name, segment) in enumerate(segments):
        segment.train()
        needs_input_grad = index > 0
        forward_times, backward_times = [], []
        stash = 0
        for rep in range(warmup + repetitions):
            x_in = x.detach().requires_grad_(needs_input_grad)
            segment.zero_grad(set_to_none=True)
            start = time.perf_counter()
            out, stash = _stashed_bytes(segment, x_in)
            mid = time.perf_counter()
            out.backward(torch.ones_like(out))
            end = time.perf_counter()
            if rep >= warmup:
                forward_times.append(mid - start)
                backward_times.append(end - mid)
        layers.append({
            "name": name,
            "forward_s": statistics.median(forward_times),
            "backward_s": statistics.median(backward_times),
            "forward_s_iqr": _iqr(forward_times), "backward_s_iqr": _iqr(backward_times),
            "activation_bytes": out.numel() * out.element_size(),
            "stash_bytes": int(stash),
            "param_bytes": sum(p.numel() * p.element_size() for p in segment.parameters()),
        })
        x = out.detach()
    return {
        "model": model_name,
        "input_bytes": batch_size * 3 * image_size * image_size * 4,
        "micro_batch_size": batch_size,
        "input_shape": [batch_size, 3, image_size, image_size],
        "num_classes": 10,
        "layers": layers,
        "provenance": {
            "tool": "envs.hetero_pipeline.profile_training",
            "cpu": cpu_model(), "torch": torch.__version__, "threads": threads,
            "repetitions": repetitions, "warmup": warmup, "statistic": "median",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "note": "reference speed 1.0 = one thread of this CPU; the machine was shared "
                    "with other jobs, so times carry contention noise (see *_iqr)",
        },
    }


def _iqr(values: list[float]) -> float:
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[2] - quartiles[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m envs.hetero_pipeline.profile_training")
    parser.add_argument("--models", default=",".join(SUPPORTED_MODELS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        profile = profile_model(name, args.batch_size, args.image_size, args.repetitions,
                                threads=args.threads)
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(profile, indent=2))
        total = sum(layer["forward_s"] + layer["backward_s"] for layer in profile["layers"])
        print(f"{name}: {len(profile['layers'])} layers, {total * 1e3:.1f} ms fwd+bwd -> {path}")


if __name__ == "__main__":
    main()
