"""Parameter-server instances: a sparse data-block x parameter-shard graph and M machines.

Every machine hosts a worker (holding data blocks) and a server (holding parameter shards).
Block ``b`` has ``samples[b]`` training samples; edge ``(b, s, nnz)`` says that the samples of
block ``b`` have ``nnz`` non-zeros among the features of shard ``s``. Shard ``s`` holds
``shard_bytes[s]`` bytes of parameters (4 bytes per float32 feature). Machine ``m`` processes
``speed_nnz_per_s[m]`` non-zeros per second, moves ``bandwidth_bytes_per_s[m]`` bytes per second
through its network link and stores at most ``memory_bytes[m]`` bytes.

Derived sizes: ``block_nnz[b] = sum of nnz over b's edges``;
``block_bytes[b] = 8 * block_nnz[b] + 4 * samples[b]`` (int32 index + float32 value per non-zero,
one float32 label per sample).

JSON format (``ParamServerInstance.to_json`` / ``from_json``)::

    {"name": "zipf-topics",
     "blocks": {"samples": [120, 80, ...]},
     "shards": {"bytes": [4096, 4096, ...]},
     "edges": [[0, 3, 57], [0, 9, 4], ...],          # [block, shard, nnz], each pair once
     "machines": [{"speed_nnz_per_s": 1e8, "bandwidth_bytes_per_s": 1.25e8,
                   "memory_bytes": 5000000}, ...]}

``save_npz`` / ``load_npz`` store the same arrays in a compressed ``.npz``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from envs.json_source import field, load_json, reject_unknown

BYTES_PER_NNZ = 8
BYTES_PER_SAMPLE = 4
BYTES_PER_FEATURE = 4


class InstanceError(ValueError):
    """A parameter-server instance or allocation is malformed; the message names the field."""


@dataclass(frozen=True, eq=False)
class ParamServerInstance:
    block_samples: np.ndarray
    shard_bytes: np.ndarray
    edge_block: np.ndarray
    edge_shard: np.ndarray
    edge_nnz: np.ndarray
    speed_nnz_per_s: np.ndarray
    bandwidth_bytes_per_s: np.ndarray
    memory_bytes: np.ndarray
    name: str = "instance"

    def __post_init__(self) -> None:
        for name, dtype in (("block_samples", np.int64), ("shard_bytes", np.int64),
                            ("edge_block", np.int64), ("edge_shard", np.int64),
                            ("edge_nnz", np.int64), ("speed_nnz_per_s", np.float64),
                            ("bandwidth_bytes_per_s", np.float64), ("memory_bytes", np.int64)):
            value = np.asarray(getattr(self, name))
            if value.ndim != 1:
                raise InstanceError(f"{self.name}: '{name}' must be one-dimensional, "
                                    f"got shape {value.shape}")
            if dtype is np.int64 and value.size and not np.all(np.isfinite(value.astype(float))):
                raise InstanceError(f"{self.name}: '{name}' holds non-finite values")
            if dtype is np.int64 and value.size and np.any(value != np.round(value)):
                raise InstanceError(f"{self.name}: '{name}' must hold integers")
            converted = value.astype(dtype)
            converted.setflags(write=False)
            object.__setattr__(self, name, converted)
        validate(self)

    # sizes -------------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return int(self.block_samples.size)

    @property
    def num_shards(self) -> int:
        return int(self.shard_bytes.size)

    @property
    def num_machines(self) -> int:
        return int(self.speed_nnz_per_s.size)

    @property
    def num_edges(self) -> int:
        return int(self.edge_block.size)

    # derived quantities ------------------------------------------------------------------
    @cached_property
    def block_nnz(self) -> np.ndarray:
        return np.bincount(self.edge_block, weights=self.edge_nnz,
                           minlength=self.num_blocks).astype(np.int64)

    @cached_property
    def block_bytes(self) -> np.ndarray:
        return BYTES_PER_NNZ * self.block_nnz + BYTES_PER_SAMPLE * self.block_samples

    @cached_property
    def shard_features(self) -> np.ndarray:
        """Features per shard (``ceil(bytes / 4)``); the real run lays shards out in order."""
        return -(-self.shard_bytes // BYTES_PER_FEATURE)

    @cached_property
    def incidence(self) -> sp.csr_matrix:
        """Block x shard 0/1 access matrix (CSR)."""
        ones = np.ones(self.num_edges, dtype=np.int64)
        return sp.csr_matrix((ones, (self.edge_block, self.edge_shard)),
                             shape=(self.num_blocks, self.num_shards))

    @cached_property
    def block_shards(self) -> tuple[np.ndarray, ...]:
        """For each block, the sorted indices of the shards it touches."""
        csr = self.incidence
        return tuple(csr.indices[csr.indptr[b]:csr.indptr[b + 1]].copy()
                     for b in range(self.num_blocks))

    @cached_property
    def shard_blocks(self) -> tuple[np.ndarray, ...]:
        """For each shard, the sorted indices of the blocks that touch it."""
        csc = self.incidence.tocsc()
        return tuple(csc.indices[csc.indptr[s]:csc.indptr[s + 1]].copy()
                     for s in range(self.num_shards))

    @cached_property
    def total_item_bytes(self) -> int:
        return int(self.block_bytes.sum() + self.shard_bytes.sum())

    @cached_property
    def time_scale_s(self) -> float:
        """A fixed per-instance time scale used to normalise rewards and observations.

        Perfectly balanced compute (total non-zeros over total speed) plus the link time of
        pulling and pushing every accessed shard once per block, spread over all links.
        """
        compute = self.block_nnz.sum() / self.speed_nnz_per_s.sum()
        traffic = 2.0 * self.shard_bytes[self.edge_shard].sum() / self.bandwidth_bytes_per_s.sum()
        return float(max(compute + traffic, 1e-12))

    # serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "blocks": {"samples": self.block_samples.tolist()},
            "shards": {"bytes": self.shard_bytes.tolist()},
            "edges": np.stack([self.edge_block, self.edge_shard, self.edge_nnz], 1).tolist(),
            "machines": [
                {"speed_nnz_per_s": float(speed), "bandwidth_bytes_per_s": float(bandwidth),
                 "memory_bytes": int(memory)}
                for speed, bandwidth, memory in zip(self.speed_nnz_per_s,
                                                    self.bandwidth_bytes_per_s,
                                                    self.memory_bytes, strict=True)
            ],
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise; also write to ``path`` when given. Returns the JSON text."""
        text = json.dumps(self.to_dict())
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: Any, source: str = "instance") -> ParamServerInstance:
        return _parse(data, source)

    @classmethod
    def from_json(cls, path_or_str: str | Path) -> ParamServerInstance:
        """Parse from a JSON string or from the path of a JSON file."""
        data, source = load_json(path_or_str, InstanceError)
        return _parse(data, source)

    def save_npz(self, path: str | Path) -> None:
        np.savez_compressed(
            path, name=np.array(self.name), block_samples=self.block_samples,
            shard_bytes=self.shard_bytes, edge_block=self.edge_block,
            edge_shard=self.edge_shard, edge_nnz=self.edge_nnz,
            speed_nnz_per_s=self.speed_nnz_per_s,
            bandwidth_bytes_per_s=self.bandwidth_bytes_per_s, memory_bytes=self.memory_bytes)

    @classmethod
    def load_npz(cls, path: str | Path) -> ParamServerInstance:
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InstanceError(f"{path}: cannot read instance npz: {error}") from None
        missing = [key for key in _ARRAY_FIELDS if key not in data.files]
        if missing:
            raise InstanceError(f"{path}: missing array(s) {missing}")
        name = str(data["name"]) if "name" in data.files else Path(path).stem
        return cls(name=name, **{key: data[key] for key in _ARRAY_FIELDS})

    def with_machines(self, speed_nnz_per_s: np.ndarray, bandwidth_bytes_per_s: np.ndarray,
                      memory_bytes: np.ndarray, name: str | None = None) -> ParamServerInstance:
        """The same data graph on a different set of machines."""
        return ParamServerInstance(
            block_samples=self.block_samples, shard_bytes=self.shard_bytes,
            edge_block=self.edge_block, edge_shard=self.edge_shard, edge_nnz=self.edge_nnz,
            speed_nnz_per_s=speed_nnz_per_s, bandwidth_bytes_per_s=bandwidth_bytes_per_s,
            memory_bytes=memory_bytes, name=name or self.name)


_ARRAY_FIELDS = ("block_samples", "shard_bytes", "edge_block", "edge_shard", "edge_nnz",
                 "speed_nnz_per_s", "bandwidth_bytes_per_s", "memory_bytes")


@dataclass(frozen=True, eq=False)
class Allocation:
    """Which machine holds each data block (worker) and each parameter shard (server)."""

    block_machine: np.ndarray
    shard_machine: np.ndarray

    def __post_init__(self) -> None:
        for name in ("block_machine", "shard_machine"):
            value = np.asarray(getattr(self, name))
            if value.ndim != 1:
                raise InstanceError(f"allocation: '{name}' must be one-dimensional")
            converted = value.astype(np.int64)
            converted.setflags(write=False)
            object.__setattr__(self, name, converted)

    def check(self, instance: ParamServerInstance) -> None:
        """Raise :class:`InstanceError` if the allocation does not fit ``instance``."""
        for name, expected in (("block_machine", instance.num_blocks),
                               ("shard_machine", instance.num_shards)):
            value = getattr(self, name)
            if value.size != expected:
                raise InstanceError(f"allocation: '{name}' has {value.size} entries, "
                                    f"instance {instance.name!r} needs {expected}")
            bad = np.flatnonzero((value < 0) | (value >= instance.num_machines))
            if bad.size:
                raise InstanceError(f"allocation: '{name}'[{bad[0]}] = {value[bad[0]]} is not a "
                                    f"machine index in 0..{instance.num_machines - 1}")

    def to_dict(self) -> dict[str, list[int]]:
        return {"block_machine": self.block_machine.tolist(),
                "shard_machine": self.shard_machine.tolist()}


def _field(mapping: Any, key: str, where: str) -> Any:
    return field(mapping, key, where, InstanceError)


def _numbers(values: Any, where: str, integer: bool) -> np.ndarray:
    if not isinstance(values, list):
        raise InstanceError(f"{where}: expected a list, got {type(values).__name__}")
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InstanceError(f"{where}[{index}]: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise InstanceError(f"{where}[{index}]: expected a finite number, got {value!r}")
        if integer and value != int(value):
            raise InstanceError(f"{where}[{index}]: expected an integer, got {value!r}")
    return np.array(values, dtype=np.int64 if integer else np.float64)


def _parse(data: Any, source: str) -> ParamServerInstance:
    reject_unknown(data, ("name", "blocks", "shards", "edges", "machines"), source, InstanceError)
    reject_unknown(_field(data, "blocks", source), ("samples",), f"{source}: blocks",
                   InstanceError)
    reject_unknown(_field(data, "shards", source), ("bytes",), f"{source}: shards",
                   InstanceError)
    samples = _numbers(_field(_field(data, "blocks", source), "samples", f"{source}: blocks"),
                       f"{source}: blocks.samples", integer=True)
    shard_bytes = _numbers(_field(_field(data, "shards", source), "bytes", f"{source}: shards"),
                           f"{source}: shards.bytes", integer=True)
    edges = _field(data, "edges", source)
    if not isinstance(edges, list):
        raise InstanceError(f"{source}: field 'edges' must be a list of [block, shard, nnz]")
    for index, edge in enumerate(edges):
        if not isinstance(edge, list) or len(edge) != 3:
            raise InstanceError(f"{source}: edges[{index}] must be [block, shard, nnz], "
                                f"got {edge!r}")
    flat = _numbers([v for edge in edges for v in edge], f"{source}: edges (flattened)", True)
    edge_array = flat.reshape(-1, 3)
    machines = _field(data, "machines", source)
    if not isinstance(machines, list):
        raise InstanceError(f"{source}: field 'machines' must be a list")
    columns = {key: [] for key in ("speed_nnz_per_s", "bandwidth_bytes_per_s", "memory_bytes")}
    for index, machine in enumerate(machines):
        reject_unknown(machine, columns, f"{source}: machines[{index}]", InstanceError)
        for key, values in columns.items():
            values.append(_field(machine, key, f"{source}: machines[{index}]"))
    return ParamServerInstance(
        name=str(data.get("name", source)), block_samples=samples, shard_bytes=shard_bytes,
        edge_block=edge_array[:, 0], edge_shard=edge_array[:, 1], edge_nnz=edge_array[:, 2],
        speed_nnz_per_s=_numbers(columns["speed_nnz_per_s"], f"{source}: machines.speed_nnz_per_s",
                                 False),
        bandwidth_bytes_per_s=_numbers(columns["bandwidth_bytes_per_s"],
                                       f"{source}: machines.bandwidth_bytes_per_s", False),
        memory_bytes=_numbers(columns["memory_bytes"], f"{source}: machines.memory_bytes", True))


def validate(instance: ParamServerInstance) -> None:
    """Raise :class:`InstanceError` naming the field and index of the first problem."""
    where = f"instance {instance.name!r}"
    if instance.num_blocks == 0:
        raise InstanceError(f"{where}: has no data blocks")
    if instance.num_shards == 0:
        raise InstanceError(f"{where}: has no parameter shards")
    if instance.num_machines == 0:
        raise InstanceError(f"{where}: has no machines")
    for name in ("bandwidth_bytes_per_s", "memory_bytes"):
        if getattr(instance, name).size != instance.num_machines:
            raise InstanceError(f"{where}: '{name}' has {getattr(instance, name).size} entries, "
                                f"'speed_nnz_per_s' has {instance.num_machines}")
    if not (instance.edge_block.size == instance.edge_shard.size == instance.edge_nnz.size):
        raise InstanceError(f"{where}: edge arrays differ in length")
    checks = (("block_samples", instance.block_samples, 1), ("shard_bytes", instance.shard_bytes, 1),
              ("edge nnz", instance.edge_nnz, 1), ("memory_bytes", instance.memory_bytes, 0))
    for name, values, low in checks:
        bad = np.flatnonzero(values < low)
        if bad.size:
            raise InstanceError(f"{where}: {name}[{bad[0]}] = {values[bad[0]]} must be >= {low}")
    for name in ("speed_nnz_per_s", "bandwidth_bytes_per_s"):
        values = getattr(instance, name)
        bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
        if bad.size:
            raise InstanceError(f"{where}: machines[{bad[0]}].{name} = {values[bad[0]]} must be a "
                                f"positive finite number")
    for name, values, bound in (("block", instance.edge_block, instance.num_blocks),
                                ("shard", instance.edge_shard, instance.num_shards)):
        bad = np.flatnonzero((values < 0) | (values >= bound))
        if bad.size:
            raise InstanceError(f"{where}: edges[{bad[0]}] names {name} {values[bad[0]]}, "
                                f"valid range is 0..{bound - 1}")
    keys = instance.edge_block * instance.num_shards + instance.edge_shard
    unique, counts = np.unique(keys, return_counts=True)
    if np.any(counts > 1):
        key = unique[np.argmax(counts > 1)]
        raise InstanceError(f"{where}: edge (block {key // instance.num_shards}, shard "
                            f"{key % instance.num_shards}) appears more than once")
    largest = int(max(instance.block_bytes.max(), instance.shard_bytes.max()))
    needed = instance.total_item_bytes + instance.num_machines * largest
    if int(instance.memory_bytes.sum()) < needed:
        raise InstanceError(
            f"{where}: memory_bytes sum to {int(instance.memory_bytes.sum())}, below the "
            f"{needed} bytes required (all blocks and shards plus one largest item per machine, "
            f"which guarantees a machine with room at every step)")
