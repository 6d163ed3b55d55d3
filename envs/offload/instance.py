"""Offloading instances: a batch of chain DNN jobs, a device, an uplink and a server.

JSON format (``OffloadInstance.to_json`` / ``from_json``)::

    {"bandwidth_mbps": 5.85, "latency_s": 0.01,
     "jobs": [{"name": "resnet18", "input_bytes": 602112,
               "layers": [{"name": "conv1", "device_s": 0.004, "server_s": 0.0004,
                           "output_bytes": 802816}, ...]}, ...]}

Layer ``l`` of a job (1-based) has device time ``d[l]``, server time ``s[l]`` and output size
``o[l]``; ``o[0]`` is ``input_bytes``. Cut ``c`` in ``0..L`` runs layers ``1..c`` on the device
and ``c+1..L`` on the server, uploading ``o[c]`` bytes when ``c < L``.

A job whose layers carry ``"inputs": [parent names]`` is a DAG job (:class:`envs.offload.dag.
DagJob`); its optional ``"input_name"`` (default ``"input"``) is the parent name of the job
input. Its options are candidate partitions built for the instance's bandwidth.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from envs.json_source import field, load_json, reject_unknown


class InstanceError(ValueError):
    """An offloading instance or plan is malformed; the message names the offending field."""


INSTANCE_FIELDS = ("bandwidth_mbps", "latency_s", "jobs")
CHAIN_JOB_FIELDS = ("name", "input_bytes", "layers")
DAG_JOB_FIELDS = (*CHAIN_JOB_FIELDS, "input_name")
CHAIN_LAYER_FIELDS = ("name", "device_s", "server_s", "output_bytes")
DAG_LAYER_FIELDS = (*CHAIN_LAYER_FIELDS, "inputs")


@dataclass(frozen=True)
class Layer:
    name: str
    device_s: float
    server_s: float
    output_bytes: int


@dataclass(frozen=True)
class OffloadJob:
    name: str
    input_bytes: int
    layers: tuple[Layer, ...]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    # The cut-option interface the simulator, env and planners use. A chain job's options are
    # its cuts 0..L; option L (all local) uploads nothing. A DAG job offers other options
    # (candidate partitions) through the same four members.
    @property
    def num_cuts(self) -> int:
        return len(self.layers) + 1

    @property
    def local_cut(self) -> int:
        """The option that keeps every layer on the device."""
        return len(self.layers)

    @cached_property
    def device_prefix_s(self) -> np.ndarray:
        """``D[c]``: device seconds of cut ``c`` (layers ``1..c``), for ``c`` in ``0..L``."""
        return np.concatenate([[0.0], np.cumsum([layer.device_s for layer in self.layers])])

    @cached_property
    def server_suffix_s(self) -> np.ndarray:
        """``S[c]``: server seconds of cut ``c`` (layers ``c+1..L``), for ``c`` in ``0..L``."""
        server = np.array([layer.server_s for layer in self.layers], dtype=float)
        return np.concatenate([np.cumsum(server[::-1])[::-1], [0.0]])

    @cached_property
    def cut_bytes(self) -> np.ndarray:
        """``o[c]``: bytes uploaded at cut ``c`` (``0`` at ``c = L``, nothing is sent)."""
        sizes = [self.input_bytes] + [layer.output_bytes for layer in self.layers[:-1]]
        return np.array(sizes + [0], dtype=float)


@dataclass(frozen=True)
class OffloadInstance:
    bandwidth_mbps: float
    latency_s: float
    jobs: tuple[OffloadJob, ...]

    def __post_init__(self) -> None:
        validate(self)

    @property
    def num_jobs(self) -> int:
        return len(self.jobs)

    def upload_s(self, job_index: int) -> np.ndarray:
        """``U[c]`` for every cut of a job: latency plus bytes over bandwidth; 0 when all local."""
        job = self.jobs[job_index]
        seconds = self.latency_s + 8.0 * job.cut_bytes / (self.bandwidth_mbps * 1e6)
        seconds[job.local_cut] = 0.0
        return seconds

    def cut_times(self, job_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(D, U, S)`` arrays over cuts ``0..L`` of one job."""
        job = self.jobs[job_index]
        return job.device_prefix_s, self.upload_s(job_index), job.server_suffix_s

    def with_bandwidth(self, bandwidth_mbps: float) -> OffloadInstance:
        """The same jobs at another bandwidth (DAG jobs get that bandwidth's candidates)."""
        jobs = tuple(job.with_candidates(bandwidth_mbps, self.latency_s)
                     if hasattr(job, "with_candidates") else job for job in self.jobs)
        return OffloadInstance(bandwidth_mbps, self.latency_s, jobs)

    def to_dict(self) -> dict[str, Any]:
        jobs = []
        for job in self.jobs:
            entry = {"name": job.name, "input_bytes": job.input_bytes,
                     "layers": [asdict(layer) for layer in job.layers]}
            if hasattr(job, "input_name"):
                entry["input_name"] = job.input_name
                for layer in entry["layers"]:
                    layer["inputs"] = list(layer["inputs"])
            jobs.append(entry)
        return {"bandwidth_mbps": self.bandwidth_mbps, "latency_s": self.latency_s,
                "jobs": jobs}

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise; also write to ``path`` when given. Returns the JSON text."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: Any, source: str = "instance") -> OffloadInstance:
        return _parse(data, source)

    @classmethod
    def from_json(cls, path_or_str: str | Path) -> OffloadInstance:
        """Parse from a JSON string or from the path of a JSON file."""
        data, source = load_json(path_or_str, InstanceError)
        return _parse(data, source)


def _field(mapping: Any, key: str, where: str) -> Any:
    return field(mapping, key, where, InstanceError)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InstanceError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InstanceError(f"{where}: expected an integer, got {value!r}")
    return int(value)


def _parse(data: Any, source: str) -> OffloadInstance:
    from envs.offload.dag import DagJob, DagLayer

    reject_unknown(data, INSTANCE_FIELDS, source, InstanceError)
    bandwidth = _number(_field(data, "bandwidth_mbps", source), f"{source}: 'bandwidth_mbps'")
    latency = _number(_field(data, "latency_s", source), f"{source}: 'latency_s'")
    jobs_data = _field(data, "jobs", source)
    if not isinstance(jobs_data, list):
        raise InstanceError(f"{source}: field 'jobs' must be a list")
    jobs = []
    for j, job_data in enumerate(jobs_data):
        where = f"{source}: job {j}"
        name = str(_field(job_data, "name", where))
        where = f"{source}: job {j} ({name!r})"
        layers_data = _field(job_data, "layers", where)
        if not isinstance(layers_data, list):
            raise InstanceError(f"{where}: field 'layers' must be a list")
        is_dag = any(isinstance(layer, dict) and "inputs" in layer for layer in layers_data)
        reject_unknown(job_data, DAG_JOB_FIELDS if is_dag else CHAIN_JOB_FIELDS, where,
                       InstanceError)
        layers = []
        for index, layer_data in enumerate(layers_data):
            at = f"{where}, layer {index + 1}"
            layer_name = str(_field(layer_data, "name", at))
            at = f"{where}, layer {index + 1} ({layer_name!r})"
            reject_unknown(layer_data, DAG_LAYER_FIELDS if is_dag else CHAIN_LAYER_FIELDS, at,
                           InstanceError)
            fields = dict(
                name=layer_name,
                device_s=_number(_field(layer_data, "device_s", at), f"{at}, field 'device_s'"),
                server_s=_number(_field(layer_data, "server_s", at), f"{at}, field 'server_s'"),
                output_bytes=_integer(_field(layer_data, "output_bytes", at),
                                      f"{at}, field 'output_bytes'"),
            )
            if not is_dag:
                layers.append(Layer(**fields))
                continue
            inputs = _field(layer_data, "inputs", at)
            if not isinstance(inputs, list) or not all(isinstance(p, str) for p in inputs):
                raise InstanceError(f"{at}: field 'inputs' must be a list of layer names")
            layers.append(DagLayer(**fields, inputs=tuple(inputs)))
        input_bytes = _integer(_field(job_data, "input_bytes", where), f"{where}, 'input_bytes'")
        if not is_dag:
            jobs.append(OffloadJob(name=name, input_bytes=input_bytes, layers=tuple(layers)))
            continue
        try:
            job = DagJob(name, input_bytes, tuple(layers),
                         input_name=str(job_data.get("input_name", "input")))
        except InstanceError as error:
            raise InstanceError(f"{source}: {error}") from None
        if _valid_times(layers) and bandwidth > 0 and math.isfinite(bandwidth):
            job = job.with_candidates(bandwidth, latency)
        jobs.append(job)
    return OffloadInstance(bandwidth_mbps=bandwidth, latency_s=latency, jobs=tuple(jobs))


def _valid_times(layers: list) -> bool:
    """Candidates are built only from valid times; :func:`validate` reports the others."""
    return all(math.isfinite(x.device_s) and x.device_s >= 0 and math.isfinite(x.server_s)
               and x.server_s >= 0 and x.output_bytes >= 0 for x in layers)


def validate(instance: OffloadInstance) -> None:
    """Raise :class:`InstanceError` naming the job, layer and field of the first problem."""
    if not math.isfinite(instance.bandwidth_mbps) or instance.bandwidth_mbps <= 0:
        raise InstanceError(f"bandwidth_mbps must be positive, got {instance.bandwidth_mbps!r}")
    if not math.isfinite(instance.latency_s) or instance.latency_s < 0:
        raise InstanceError(f"latency_s must be non-negative, got {instance.latency_s!r}")
    if not instance.jobs:
        raise InstanceError("the job list is empty: an instance needs at least one job")
    for j, job in enumerate(instance.jobs):
        where = f"job {j} ({job.name!r})"
        if job.input_bytes < 0:
            raise InstanceError(f"{where}: input_bytes must be >= 0, got {job.input_bytes}")
        if not job.layers:
            raise InstanceError(f"{where}: has no layers")
        for index, layer in enumerate(job.layers, start=1):
            at = f"{where}, layer {index} ({layer.name!r})"
            for field_name in ("device_s", "server_s"):
                value = getattr(layer, field_name)
                if not math.isfinite(value) or value < 0:
                    raise InstanceError(f"{at}: {field_name} must be a non-negative time, "
                                        f"got {value!r}")
            if layer.output_bytes < 0:
                raise InstanceError(f"{at}: output_bytes must be >= 0, got {layer.output_bytes}")
