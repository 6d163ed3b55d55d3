"""Instance generators (Jumanji style: ``generator(rng) -> PipelineInstance``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from envs.hetero_pipeline.instance import (
    Device,
    InstanceError,
    LayerProfile,
    ModelProfile,
    PipelineInstance,
    load_profile,
)
from envs.shipped import DATA_DIR

TRAINING_PROFILE_DIR = DATA_DIR / "profiles" / "training"


def training_profiles(directory: str | Path = TRAINING_PROFILE_DIR) -> dict[str, ModelProfile]:
    """Every ``<model>.json`` training profile in ``directory``, keyed by model name."""
    directory = Path(directory)
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise InstanceError(f"{directory}: no training profiles (*.json); run "
                            "python -m envs.hetero_pipeline.profile_training")
    return {path.stem: load_profile(path) for path in paths}


def single_device_memory_bytes(model: ModelProfile, memory_factor: float) -> float:
    """Memory one device needs to train the whole model alone (one stage, one micro-batch)."""
    return memory_factor * model.param_prefix_bytes[-1] + model.stash_prefix_bytes[-1]


@dataclass
class HeteroPipelineGenerator:
    """Device classes (phones, boards, laptops) drawn around a fastest-to-slowest speed ratio.

    ``num_classes`` capability classes get speeds log-spaced at random between ``1/ratio`` and
    ``1`` (the fastest class is exactly 1, the slowest exactly ``1/ratio``), a link bandwidth
    log-uniform in ``bandwidth_mbps`` and a memory of ``memory_fraction`` times what the whole
    model needs on one device. Devices jitter +-5 % (speed, bandwidth) around their class. At
    least one device can hold the whole model, so every instance has a feasible plan.
    """

    models: tuple[str, ...] | None = None
    num_devices: tuple[int, int] = (3, 6)
    speed_ratio: tuple[float, float] = (1.0, 8.0)
    num_microbatches: tuple[int, int] = (4, 8)
    bandwidth_mbps: tuple[float, float] = (100.0, 1000.0)
    memory_fraction: tuple[float, float] = (0.4, 1.3)
    latency_s: float = 0.001
    memory_factor: float = 3.0
    profile_dir: str | Path = TRAINING_PROFILE_DIR
    _profiles: dict[str, ModelProfile] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        available = training_profiles(self.profile_dir)
        names = self.models or tuple(available)
        unknown = [name for name in names if name not in available]
        if unknown:
            raise InstanceError(f"unknown model profile(s) {unknown}; available: "
                                f"{sorted(available)}")
        self._profiles = {name: available[name] for name in names}

    def __call__(self, rng: np.random.Generator) -> PipelineInstance:
        model = self._profiles[list(self._profiles)[int(rng.integers(len(self._profiles)))]]
        num_devices = int(rng.integers(self.num_devices[0], self.num_devices[1] + 1))
        ratio = float(np.exp(rng.uniform(*np.log(self.speed_ratio))))
        num_classes = 1 if ratio <= 1.0 or num_devices == 1 else int(
            rng.integers(2, min(3, num_devices) + 1))
        class_speed = np.concatenate([[1.0, 1.0 / ratio], ratio ** -rng.uniform(
            0, 1, max(num_classes - 2, 0))])[:num_classes]
        class_bw = np.exp(rng.uniform(*np.log(self.bandwidth_mbps), num_classes))
        class_mem = rng.uniform(*self.memory_fraction, num_classes)
        members = np.concatenate([np.arange(num_classes),
                                  rng.integers(0, num_classes, num_devices - num_classes)])
        rng.shuffle(members)
        speeds = class_speed[members] * rng.uniform(0.95, 1.05, num_devices)
        speeds = speeds / speeds.max()
        if num_classes > 1:  # keep the drawn ratio exact after the jitter
            low = speeds.argmin()
            speeds[low] = 1.0 / ratio
        need = single_device_memory_bytes(model, self.memory_factor)
        memory = class_mem[members] * need
        memory[memory.argmax()] = max(memory.max(), 1.05 * need)
        bandwidth = class_bw[members] * rng.uniform(0.95, 1.05, num_devices)
        devices = tuple(Device(name=f"dev{i}", speed=float(speeds[i]),
                               memory_bytes=float(memory[i]), bandwidth_mbps=float(bandwidth[i]))
                        for i in range(num_devices))
        return PipelineInstance(
            devices=devices, model=model, latency_s=self.latency_s,
            num_microbatches=int(rng.integers(self.num_microbatches[0],
                                              self.num_microbatches[1] + 1)),
            memory_factor=self.memory_factor)


@dataclass
class ToyIdenticalGenerator:
    """Identical devices, identical layers, free communication: the optimum is known.

    With no bytes to move, one data-parallel stage of all devices has no pipeline bubble and
    reaches the total-work bound ``M * L * (f + b) / K``; no plan can beat that bound.
    """

    num_devices: int = 4
    num_layers: int = 8
    num_microbatches: int = 4
    forward_s: float = 0.01
    backward_s: float = 0.02

    def __call__(self, rng: np.random.Generator) -> PipelineInstance:
        layers = tuple(LayerProfile(f"layer{i}", self.forward_s, self.backward_s, 0.0, 0.0, 0.0)
                       for i in range(self.num_layers))
        devices = tuple(Device(f"dev{i}", 1.0, 1e9, 1000.0) for i in range(self.num_devices))
        return PipelineInstance(devices=devices, model=ModelProfile("toy", 0.0, layers),
                                num_microbatches=self.num_microbatches, latency_s=0.0)

    def optimum_s(self) -> float:
        return (self.num_microbatches * self.num_layers * (self.forward_s + self.backward_s)
                / self.num_devices)
