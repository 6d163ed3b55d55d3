"""Shipped DNN profiles (``data/profiles/<model>.json``) turned into offloading jobs.

A profile is written by ``python -m device_bridge.profiler``: the chain of segments between the
model's single-tensor cut points, each with its measured device time, its server time (device
time divided by the documented server speed-up, default 10) and the bytes of the tensor that
crosses the cut after it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from envs.json_source import field, reject_unknown
from envs.offload.instance import CHAIN_LAYER_FIELDS, InstanceError, Layer, OffloadJob
from envs.shipped import DATA_DIR

PROFILE_DIR = DATA_DIR / "profiles"
PROFILE_FIELDS = ("model", "input_shape", "input_bytes", "provenance", "layers", "graph")
NODE_FIELDS = ("name", "op", "inputs", "device_s", "server_s", "output_bytes")


def available_models(profile_dir: Path = PROFILE_DIR) -> list[str]:
    return sorted(path.stem for path in profile_dir.glob("*.json"))


@cache
def load_profile(model: str, profile_dir: Path = PROFILE_DIR) -> dict[str, Any]:
    path = profile_dir / f"{model}.json"
    if not path.exists():
        raise InstanceError(f"unknown model {model!r}: no profile {path} "
                            f"(available: {', '.join(available_models(profile_dir)) or 'none'})")
    try:
        profile = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InstanceError(f"{path}: malformed JSON: {error}") from None
    _check_profile(profile, str(path))
    return profile


def _check_profile(profile: Any, where: str) -> None:
    """Known keys only, and every field the offloading jobs read. ``provenance`` is the
    profiler's free-form measurement record, so its keys are not checked."""
    reject_unknown(profile, PROFILE_FIELDS, where, InstanceError)
    for key in ("input_bytes", "layers", "provenance"):
        field(profile, key, where, InstanceError)
    for index, layer in enumerate(profile["layers"]):
        at = f"{where}: layers[{index}]"
        reject_unknown(layer, CHAIN_LAYER_FIELDS, at, InstanceError)
        for key in CHAIN_LAYER_FIELDS:
            field(layer, key, at, InstanceError)
    if "graph" in profile:
        reject_unknown(profile["graph"], ("nodes",), f"{where}: graph", InstanceError)
        for index, node in enumerate(field(profile["graph"], "nodes", f"{where}: graph",
                                           InstanceError)):
            at = f"{where}: graph.nodes[{index}]"
            reject_unknown(node, NODE_FIELDS, at, InstanceError)
            for key in NODE_FIELDS:
                field(node, key, at, InstanceError)


@cache
def job_from_profile(
    model: str,
    device_scale: float = 1.0,
    server_speedup: float | None = None,
    name: str | None = None,
) -> OffloadJob:
    """An :class:`OffloadJob` from a shipped profile.

    ``device_scale`` multiplies device times (a slower phone: ``> 1``). ``server_speedup``, when
    given, replaces the profile's server times by ``measured device time / server_speedup``.
    """
    profile = load_profile(model)
    layers = []
    for layer in profile["layers"]:
        server_s = (layer["device_s"] / server_speedup if server_speedup
                    else layer["server_s"])
        layers.append(Layer(layer["name"], layer["device_s"] * device_scale, server_s,
                            int(layer["output_bytes"])))
    return OffloadJob(name or model, int(profile["input_bytes"]), tuple(layers))
