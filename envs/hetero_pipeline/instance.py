"""Heterogeneous pipeline-training instances and plans (dataclasses with a JSON round-trip).

Instance JSON (``PipelineInstance.to_json`` / ``from_json``)::

    {"num_microbatches": 8, "latency_s": 0.001, "memory_factor": 3.0,
     "devices": [{"name": "dev0", "speed": 1.0, "memory_bytes": 2.0e9,
                  "bandwidth_mbps": 500.0}, ...],
     "model": {"name": "resnet18", "input_bytes": 393216,
               "layers": [{"name": "stem", "forward_s": 0.009, "backward_s": 0.016,
                           "activation_bytes": 524288, "stash_bytes": 5637120,
                           "param_bytes": 38144}, ...]}}

- ``speed``: compute speed relative to the profile's reference (a layer that takes
  ``forward_s`` at the reference takes ``forward_s / speed`` on the device).
- ``memory_bytes``: memory available for training state; ``bandwidth_mbps``: the device's
  link, in megabits per second (each direction).
- Layer times are for one micro-batch at reference speed; ``activation_bytes`` is the layer
  output (sent forward, and its gradient sent back, when a stage ends at this layer);
  ``stash_bytes`` is what the layer keeps for backward per micro-batch; ``param_bytes`` its
  weights. ``memory_factor`` is the bytes of training state per parameter byte
  (weights + gradients + optimizer state; 3 for SGD with momentum).

Plan JSON (``PipelinePlan``): ``{"stages": [{"devices": [0, 2], "start": 0, "stop": 4}, ...]}``
-- stages in pipeline order, each a non-empty set of device indices and the contiguous layer
range ``start..stop-1``; ranges cover all layers in order; a device is in at most one stage
(devices in no stage stay idle).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from envs.json_source import reject_unknown

MBPS_TO_BYTES_PER_S = 1e6 / 8
INSTANCE_FIELDS = ("num_microbatches", "latency_s", "memory_factor", "devices", "model")
DEVICE_FIELDS = ("name", "speed", "memory_bytes", "bandwidth_mbps")
# A training profile (profile_training) adds its measurement record to the instance's model.
MODEL_FIELDS = ("name", "model", "input_bytes", "layers", "input_shape", "micro_batch_size",
                "num_classes", "provenance")
LAYER_FIELDS = ("name", "forward_s", "backward_s", "activation_bytes", "stash_bytes",
                "param_bytes", "forward_s_iqr", "backward_s_iqr")


class InstanceError(ValueError):
    """A pipeline instance or plan is malformed; the message names the offending field."""


@dataclass(frozen=True)
class Device:
    name: str
    speed: float
    memory_bytes: float
    bandwidth_mbps: float

    @property
    def bytes_per_s(self) -> float:
        return self.bandwidth_mbps * MBPS_TO_BYTES_PER_S


@dataclass(frozen=True)
class LayerProfile:
    name: str
    forward_s: float
    backward_s: float
    activation_bytes: float
    stash_bytes: float
    param_bytes: float


@dataclass(frozen=True)
class ModelProfile:
    name: str
    input_bytes: float
    layers: tuple[LayerProfile, ...]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def _prefix(self, field: str) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum([getattr(layer, field) for layer in self.layers])])

    @cached_property
    def forward_prefix_s(self) -> np.ndarray:
        return self._prefix("forward_s")

    @cached_property
    def backward_prefix_s(self) -> np.ndarray:
        return self._prefix("backward_s")

    @cached_property
    def stash_prefix_bytes(self) -> np.ndarray:
        return self._prefix("stash_bytes")

    @cached_property
    def param_prefix_bytes(self) -> np.ndarray:
        return self._prefix("param_bytes")

    @cached_property
    def activation_bytes(self) -> np.ndarray:
        return np.array([layer.activation_bytes for layer in self.layers], dtype=float)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model") -> ModelProfile:
        reject_unknown(data, MODEL_FIELDS, source, InstanceError)
        for index, layer in enumerate(data.get("layers") or ()):
            reject_unknown(layer, LAYER_FIELDS, f"{source}.layers[{index}]", InstanceError)
        try:
            layers = tuple(
                LayerProfile(name=str(layer["name"]), forward_s=float(layer["forward_s"]),
                             backward_s=float(layer["backward_s"]),
                             activation_bytes=float(layer["activation_bytes"]),
                             stash_bytes=float(layer.get("stash_bytes", 0.0)),
                             param_bytes=float(layer["param_bytes"]))
                for layer in data["layers"])
            profile = cls(name=str(data["name"] if "name" in data else data["model"]),
                          input_bytes=float(data.get("input_bytes", 0.0)), layers=layers)
        except KeyError as error:
            raise InstanceError(f"{source}: missing field {error.args[0]!r}") from error
        except (TypeError, ValueError) as error:
            raise InstanceError(f"{source}: {error}") from error
        _validate_model(profile, source)
        return profile


def load_profile(path: str | Path) -> ModelProfile:
    """Read a training profile written by :mod:`envs.hetero_pipeline.profile_training`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise InstanceError(f"{path}: no such profile file") from error
    except json.JSONDecodeError as error:
        raise InstanceError(f"{path}: malformed JSON ({error})") from error
    return ModelProfile.from_dict(data, source=str(path))


@dataclass(frozen=True)
class PipelineInstance:
    devices: tuple[Device, ...]
    model: ModelProfile
    num_microbatches: int
    latency_s: float = 0.0
    memory_factor: float = 3.0

    def __post_init__(self) -> None:
        validate_instance(self)

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    @property
    def num_layers(self) -> int:
        return self.model.num_layers

    @cached_property
    def speeds(self) -> np.ndarray:
        return np.array([device.speed for device in self.devices], dtype=float)

    @cached_property
    def memories(self) -> np.ndarray:
        return np.array([device.memory_bytes for device in self.devices], dtype=float)

    @cached_property
    def bytes_per_s(self) -> np.ndarray:
        return np.array([device.bytes_per_s for device in self.devices], dtype=float)

    def to_dict(self) -> dict[str, Any]:
        return {"num_microbatches": self.num_microbatches, "latency_s": self.latency_s,
                "memory_factor": self.memory_factor,
                "devices": [asdict(device) for device in self.devices],
                "model": {"name": self.model.name, "input_bytes": self.model.input_bytes,
                          "layers": [asdict(layer) for layer in self.model.layers]}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineInstance:
        reject_unknown(data, INSTANCE_FIELDS, "instance", InstanceError)
        for index, device in enumerate(data.get("devices") or ()):
            reject_unknown(device, DEVICE_FIELDS, f"devices[{index}]", InstanceError)
        try:
            devices = tuple(Device(name=str(d.get("name", f"dev{i}")), speed=float(d["speed"]),
                                   memory_bytes=float(d["memory_bytes"]),
                                   bandwidth_mbps=float(d["bandwidth_mbps"]))
                            for i, d in enumerate(data["devices"]))
            return cls(devices=devices, model=ModelProfile.from_dict(data["model"]),
                       num_microbatches=int(data["num_microbatches"]),
                       latency_s=float(data.get("latency_s", 0.0)),
                       memory_factor=float(data.get("memory_factor", 3.0)))
        except KeyError as error:
            raise InstanceError(f"instance: missing field {error.args[0]!r}") from error

    @classmethod
    def from_json(cls, text: str) -> PipelineInstance:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InstanceError(f"instance: malformed JSON ({error})") from error
        return cls.from_dict(data)


@dataclass(frozen=True)
class Stage:
    devices: tuple[int, ...]
    start: int
    stop: int


@dataclass(frozen=True)
class PipelinePlan:
    stages: tuple[Stage, ...]

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def groups(self) -> tuple[tuple[int, ...], ...]:
        return tuple(stage.devices for stage in self.stages)

    @property
    def cuts(self) -> tuple[int, ...]:
        """Layer boundaries ``0 = c_0 < c_1 < ... < c_S = L``."""
        return (0,) + tuple(stage.stop for stage in self.stages)

    @classmethod
    def from_groups(cls, groups: list[tuple[int, ...]] | tuple, cuts: list[int] | tuple
                    ) -> PipelinePlan:
        return cls(tuple(Stage(tuple(int(d) for d in group), int(cuts[s]), int(cuts[s + 1]))
                         for s, group in enumerate(groups)))

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [{"devices": list(s.devices), "start": s.start, "stop": s.stop}
                           for s in self.stages]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> PipelinePlan:
        try:
            data = json.loads(text)
            reject_unknown(data, ("stages",), "plan", InstanceError)
            for index, stage in enumerate(data.get("stages") or ()):
                reject_unknown(stage, ("devices", "start", "stop"), f"plan.stages[{index}]",
                               InstanceError)
            return cls(tuple(Stage(tuple(int(d) for d in s["devices"]), int(s["start"]),
                                   int(s["stop"])) for s in data["stages"]))
        except json.JSONDecodeError as error:
            raise InstanceError(f"plan: malformed JSON ({error})") from error
        except KeyError as error:
            raise InstanceError(f"plan: missing field {error.args[0]!r}") from error


def _check_number(value: float, where: str, positive: bool) -> None:
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise InstanceError(f"{where} must be {kind} finite number, got {value!r}")


def _validate_model(model: ModelProfile, source: str) -> None:
    if not model.layers:
        raise InstanceError(f"{source}: model {model.name!r} has no layers")
    _check_number(model.input_bytes, f"{source}.input_bytes", positive=False)
    for index, layer in enumerate(model.layers):
        for field in ("forward_s", "backward_s", "activation_bytes", "stash_bytes",
                      "param_bytes"):
            _check_number(getattr(layer, field), f"{source}.layers[{index}].{field}",
                          positive=False)


def validate_instance(instance: PipelineInstance) -> None:
    if not instance.devices:
        raise InstanceError("instance.devices is empty")
    for index, device in enumerate(instance.devices):
        _check_number(device.speed, f"devices[{index}].speed", positive=True)
        _check_number(device.memory_bytes, f"devices[{index}].memory_bytes", positive=True)
        _check_number(device.bandwidth_mbps, f"devices[{index}].bandwidth_mbps", positive=True)
    if instance.num_microbatches < 1:
        raise InstanceError(f"num_microbatches must be >= 1, got {instance.num_microbatches}")
    _check_number(instance.latency_s, "latency_s", positive=False)
    _check_number(instance.memory_factor, "memory_factor", positive=False)
    _validate_model(instance.model, "model")


def validate_plan(instance: PipelineInstance, plan: PipelinePlan) -> None:
    """Raise :class:`InstanceError` naming the first structural problem of ``plan``."""
    if not plan.stages:
        raise InstanceError("plan.stages is empty")
    used: set[int] = set()
    expected_start = 0
    for index, stage in enumerate(plan.stages):
        if not stage.devices:
            raise InstanceError(f"plan.stages[{index}].devices is empty")
        for device in stage.devices:
            if not 0 <= device < instance.num_devices:
                raise InstanceError(f"plan.stages[{index}].devices: unknown device {device}")
            if device in used:
                raise InstanceError(f"plan.stages[{index}].devices: device {device} is in "
                                    "two stages")
            used.add(device)
        if stage.start != expected_start:
            raise InstanceError(f"plan.stages[{index}].start is {stage.start}, expected "
                                f"{expected_start} (ranges must be contiguous)")
        if stage.stop <= stage.start:
            raise InstanceError(f"plan.stages[{index}] has an empty layer range "
                                f"{stage.start}..{stage.stop}")
        expected_start = stage.stop
    if expected_start != instance.num_layers:
        raise InstanceError(f"plan covers layers 0..{expected_start - 1}, the model has "
                            f"{instance.num_layers}")
