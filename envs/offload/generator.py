"""Instance generators (Jumanji style: ``generator(rng) -> OffloadInstance``)."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envs.offload.instance import Layer, OffloadInstance, OffloadJob
from envs.offload.profiles import available_models, job_from_profile

#: Uplink classes used by DADS and the reference work, in Mbit/s.
BANDWIDTH_CLASSES_MBPS: dict[str, float] = {"CAT1": 0.13, "3G": 1.1, "4G": 5.85, "WiFi": 18.88}
DEFAULT_MODELS = ("alexnet", "vgg16", "resnet18", "mobilenet_v2", "googlenet")


class Generator(abc.ABC):
    @abc.abstractmethod
    def __call__(self, rng: np.random.Generator) -> OffloadInstance: ...


@dataclass
class ProfileGenerator(Generator):
    """Batches of 2..``max_jobs`` jobs drawn from the shipped profiles.

    ``bandwidth``: a class name (``"4G"``), a number in Mbit/s, or ``"mixed"``: with probability
    ``class_probability`` one of the four classes, else log-uniform between CAT1 and WiFi.
    ``device_scale`` / ``server_speedup`` rescale the device and the server;
    ``device_scale_range`` draws a per-instance device factor log-uniformly (heterogeneous phones).
    """

    min_jobs: int = 2
    max_jobs: int = 6
    models: Sequence[str] = DEFAULT_MODELS
    bandwidth: str | float = "mixed"
    class_probability: float = 0.5
    latency_s: float = 0.01
    device_scale: float = 1.0
    device_scale_range: tuple[float, float] = (1.0, 1.0)
    server_speedup: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_jobs <= self.max_jobs:
            raise ValueError(f"need 1 <= min_jobs <= max_jobs, got {self.min_jobs}, "
                             f"{self.max_jobs}")
        missing = set(self.models) - set(available_models())
        if missing:
            raise ValueError(f"no shipped profile for model(s) {sorted(missing)}")

    def draw_bandwidth(self, rng: np.random.Generator) -> float:
        if isinstance(self.bandwidth, int | float):
            return float(self.bandwidth)
        if self.bandwidth in BANDWIDTH_CLASSES_MBPS:
            return BANDWIDTH_CLASSES_MBPS[self.bandwidth]
        if self.bandwidth != "mixed":
            raise ValueError(f"bandwidth must be a number, 'mixed' or one of "
                             f"{list(BANDWIDTH_CLASSES_MBPS)}, got {self.bandwidth!r}")
        if rng.random() < self.class_probability:
            return float(rng.choice(list(BANDWIDTH_CLASSES_MBPS.values())))
        low, high = np.log(0.13), np.log(18.88)
        return float(np.exp(rng.uniform(low, high)))

    def __call__(self, rng: np.random.Generator) -> OffloadInstance:
        num_jobs = int(rng.integers(self.min_jobs, self.max_jobs + 1))
        low, high = self.device_scale_range
        scale = self.device_scale * float(np.exp(rng.uniform(np.log(low), np.log(high))))
        models = rng.choice(list(self.models), size=num_jobs)
        jobs = tuple(job_from_profile(str(model), scale, self.server_speedup) for model in models)
        return OffloadInstance(self.draw_bandwidth(rng), self.latency_s, jobs)


@dataclass
class ToyBalanceGenerator(Generator):
    """Identical one-layer jobs with a closed-form optimum.

    Each job either runs locally (``device_s``) or uploads its input (``upload_s``) to a server of
    zero cost, so the best makespan is ``min_k max(k * device_s, (n - k) * upload_s)``.
    """

    num_jobs: int = 5
    device_s: float = 0.3
    upload_s: float = 0.2

    def __call__(self, rng: np.random.Generator) -> OffloadInstance:
        bandwidth_mbps = 8.0
        input_bytes = int(round(self.upload_s * bandwidth_mbps * 1e6 / 8.0))
        layer = Layer("block", self.device_s, 0.0, 4)
        jobs = tuple(OffloadJob(f"toy{j}", input_bytes, (layer,)) for j in range(self.num_jobs))
        return OffloadInstance(bandwidth_mbps, 0.0, jobs)

    def optimal_makespan_s(self) -> float:
        upload_s = 8.0 * round(self.upload_s * 8.0 * 1e6 / 8.0) / 8e6
        return min(max(k * self.device_s, (self.num_jobs - k) * upload_s)
                   for k in range(self.num_jobs + 1))
