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


TOY_BANDWIDTH_MBPS = 8.0


def _toy_input_bytes(upload_s: float) -> int:
    """Input size that takes ``upload_s`` (rounded to whole bytes) at the toy bandwidth."""
    return int(round(upload_s * TOY_BANDWIDTH_MBPS * 1e6 / 8.0))


def _balanced_optimum_s(num_jobs: int, local_s: float, upload_s: float) -> float:
    """``min_k max(k * local_s, (n - k) * upload)`` with the upload of the rounded input size."""
    upload_s = 8.0 * _toy_input_bytes(upload_s) / (TOY_BANDWIDTH_MBPS * 1e6)
    return min(max(k * local_s, (num_jobs - k) * upload_s) for k in range(num_jobs + 1))


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
        layer = Layer("block", self.device_s, 0.0, 4)
        jobs = tuple(OffloadJob(f"toy{j}", _toy_input_bytes(self.upload_s), (layer,))
                     for j in range(self.num_jobs))
        return OffloadInstance(TOY_BANDWIDTH_MBPS, 0.0, jobs)

    def optimal_makespan_s(self) -> float:
        return _balanced_optimum_s(self.num_jobs, self.device_s, self.upload_s)


DAG_MODELS = ("resnet18", "mobilenet_v2", "googlenet", "resnet50", "inception_v3")


@dataclass
class DagProfileGenerator(ProfileGenerator):
    """Batches mixing chain jobs and DAG jobs from the shipped profiles.

    Each drawn job is a DAG job (the profile's node-level ``graph``, candidates built for the
    drawn bandwidth) with probability ``dag_probability``, else the chain of single-tensor
    segments. ``models`` defaults to the branching models plus two chains.
    """

    models: Sequence[str] = (*DAG_MODELS, "alexnet", "vgg16")
    dag_probability: float = 0.7

    def __call__(self, rng: np.random.Generator) -> OffloadInstance:
        from envs.offload.dag import dag_job_from_profile

        num_jobs = int(rng.integers(self.min_jobs, self.max_jobs + 1))
        low, high = self.device_scale_range
        scale = self.device_scale * float(np.exp(rng.uniform(np.log(low), np.log(high))))
        bandwidth = self.draw_bandwidth(rng)
        jobs = []
        for model in rng.choice(list(self.models), size=num_jobs):
            if rng.random() < self.dag_probability:
                jobs.append(dag_job_from_profile(str(model), bandwidth, self.latency_s, scale,
                                                 self.server_speedup))
            else:
                jobs.append(job_from_profile(str(model), scale, self.server_speedup))
        return OffloadInstance(bandwidth, self.latency_s, tuple(jobs))


@dataclass
class RandomDagGenerator(Generator):
    """Small random DAG (or tree) jobs with uniform times, for exact comparisons.

    ``tree=True`` draws out-trees (every layer has one parent; the first reads the input);
    otherwise each layer reads one or two earlier layers (or the input).
    """

    num_jobs: int = 3
    num_layers: tuple[int, int] = (3, 6)
    tree: bool = False
    bandwidth_mbps: float = 8.0
    latency_s: float = 0.0
    server_ratio: float = 0.2

    def __call__(self, rng: np.random.Generator) -> OffloadInstance:
        from envs.offload.dag import DagJob, DagLayer

        jobs = []
        for j in range(self.num_jobs):
            count = int(rng.integers(self.num_layers[0], self.num_layers[1] + 1))
            layers = []
            for v in range(count):
                if v == 0:
                    parents: tuple[str, ...] = ("input",)
                elif self.tree:
                    parents = (f"l{int(rng.integers(0, v))}",)
                else:
                    pool = ["input"] + [f"l{u}" for u in range(v)]
                    picks = rng.choice(len(pool), size=min(len(pool), int(rng.integers(1, 3))),
                                       replace=False)
                    parents = tuple(pool[int(p)] for p in sorted(picks))
                device_s = float(rng.uniform(0.05, 1.0))
                layers.append(DagLayer(f"l{v}", device_s, device_s * self.server_ratio
                                       * float(rng.uniform(0.5, 1.5)),
                                       int(rng.integers(20_000, 800_000)), parents))
            job = DagJob(f"dag{j}", int(rng.integers(100_000, 1_000_000)), tuple(layers))
            jobs.append(job.with_candidates(self.bandwidth_mbps, self.latency_s))
        return OffloadInstance(self.bandwidth_mbps, self.latency_s, tuple(jobs))


@dataclass
class ToyForkGenerator(Generator):
    """Identical fork-shaped DAG jobs with a closed-form optimum.

    Each job reads its input (``upload_s`` to send, no latency) into two independent branches
    of ``branch_s`` device seconds each, zero server time and zero-byte outputs. Keeping one
    branch local still uploads the input, so it is dominated by all-server; the best makespan
    is ``min_k max(2 * k * branch_s, (n - k) * upload_s)`` (``k`` jobs all-local).
    """

    num_jobs: int = 5
    branch_s: float = 0.15
    upload_s: float = 0.2

    def __call__(self, rng: np.random.Generator) -> OffloadInstance:
        from envs.offload.dag import DagJob, DagLayer

        layers = (DagLayer("left", self.branch_s, 0.0, 0, ("input",)),
                  DagLayer("right", self.branch_s, 0.0, 0, ("input",)))
        jobs = tuple(DagJob(f"fork{j}", _toy_input_bytes(self.upload_s), layers)
                     .with_candidates(TOY_BANDWIDTH_MBPS) for j in range(self.num_jobs))
        return OffloadInstance(TOY_BANDWIDTH_MBPS, 0.0, jobs)

    def optimal_makespan_s(self) -> float:
        return _balanced_optimum_s(self.num_jobs, 2 * self.branch_s, self.upload_s)
