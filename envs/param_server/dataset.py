"""Sample-level sparse training data behind an instance (what the real PS loop trains on).

A :class:`SparseDataset` is a CSR matrix of samples x features with a class label per sample
and the data block of every sample (rows sorted by block). Features are laid out shard after
shard: shard ``s`` owns features ``shard_offsets[s] .. shard_offsets[s+1] - 1`` and holds a
``features x num_classes`` float32 weight matrix, so ``shard_bytes[s] = 4 * num_classes *
features``. ``to_instance`` derives the block x shard graph exactly (nnz per block and shard).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from envs.param_server.instance import InstanceError, ParamServerInstance

if TYPE_CHECKING:
    from envs.param_server.generator import MachineProfile


@dataclass(frozen=True, eq=False)
class SparseDataset:
    features: sp.csr_matrix
    labels: np.ndarray
    row_block: np.ndarray
    shard_offsets: np.ndarray
    num_classes: int
    name: str = "dataset"
    metadata: str = "{}"

    def __post_init__(self) -> None:
        rows, columns = self.features.shape
        where = f"dataset {self.name!r}"
        if self.labels.shape != (rows,) or self.row_block.shape != (rows,):
            raise InstanceError(f"{where}: labels and row_block need one entry per sample")
        if rows and np.any(np.diff(self.row_block) < 0):
            raise InstanceError(f"{where}: rows must be sorted by block")
        if self.shard_offsets[0] != 0 or self.shard_offsets[-1] != columns or np.any(
                np.diff(self.shard_offsets) <= 0):
            raise InstanceError(f"{where}: shard_offsets must rise strictly from 0 to {columns}")
        if self.num_classes < 2 or np.any((self.labels < 0) | (self.labels >= self.num_classes)):
            raise InstanceError(f"{where}: labels must lie in 0..num_classes-1 (num_classes >= 2)")
        blocks = np.unique(self.row_block)
        if blocks.size == 0 or blocks[0] != 0 or blocks[-1] != blocks.size - 1:
            raise InstanceError(f"{where}: every block 0..B-1 needs at least one sample")

    @property
    def num_blocks(self) -> int:
        return int(self.row_block.max()) + 1

    @property
    def num_shards(self) -> int:
        return int(self.shard_offsets.size - 1)

    @property
    def block_rows(self) -> np.ndarray:
        """``B + 1`` offsets: rows of block ``b`` are ``block_rows[b] .. block_rows[b+1]-1``."""
        return np.searchsorted(self.row_block, np.arange(self.num_blocks + 1))

    @property
    def shard_bytes(self) -> np.ndarray:
        return 4 * self.num_classes * np.diff(self.shard_offsets)

    def graph(self) -> tuple[np.ndarray, np.ndarray]:
        """``(block_samples, edges[block, shard, nnz])`` of the block x shard graph."""
        coo = self.features.tocoo()
        column_shard = np.searchsorted(self.shard_offsets, coo.col, side="right") - 1
        keys = self.row_block[coo.row] * self.num_shards + column_shard
        unique, counts = np.unique(keys, return_counts=True)
        edges = np.stack([unique // self.num_shards, unique % self.num_shards, counts], axis=1)
        samples = np.bincount(self.row_block, minlength=self.num_blocks)
        return samples.astype(np.int64), edges.astype(np.int64)

    def to_instance(self, num_machines: int, profile: MachineProfile,
                    rng: np.random.Generator) -> ParamServerInstance:
        samples, edges = self.graph()
        block_bytes = (8 * np.bincount(edges[:, 0], weights=edges[:, 2],
                                       minlength=samples.size) + 4 * samples).astype(np.int64)
        machines = profile.draw(rng, num_machines, block_bytes, self.shard_bytes)
        return ParamServerInstance(
            name=f"{self.name}-m{num_machines}", block_samples=samples,
            shard_bytes=self.shard_bytes, edge_block=edges[:, 0], edge_shard=edges[:, 1],
            edge_nnz=edges[:, 2], **machines)

    def matches(self, instance: ParamServerInstance) -> bool:
        """True when this data set has exactly ``instance``'s block x shard graph and sizes."""
        samples, edges = self.graph()
        mine = np.lexsort((edges[:, 1], edges[:, 0]))
        theirs = np.lexsort((instance.edge_shard, instance.edge_block))
        other = np.stack([instance.edge_block, instance.edge_shard, instance.edge_nnz], 1)
        return (samples.shape == instance.block_samples.shape
                and np.array_equal(samples, instance.block_samples)
                and np.array_equal(self.shard_bytes, instance.shard_bytes)
                and np.array_equal(edges[mine], other[theirs]))

    # persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        csr = self.features
        np.savez_compressed(
            path, indptr=csr.indptr.astype(np.int32), indices=csr.indices.astype(np.int32),
            shape=np.array(csr.shape), labels=self.labels.astype(np.int16),
            row_block=self.row_block.astype(np.int32),
            shard_offsets=self.shard_offsets.astype(np.int32),
            num_classes=np.array(self.num_classes), name=np.array(self.name),
            metadata=np.array(self.metadata))

    @classmethod
    def load(cls, path: str | Path) -> SparseDataset:
        try:
            data = np.load(path, allow_pickle=False)
            indptr, indices = data["indptr"], data["indices"]
            shape = tuple(int(v) for v in data["shape"])
            values = np.ones(indices.size, dtype=np.float32)
            return cls(features=sp.csr_matrix((values, indices, indptr), shape=shape),
                       labels=data["labels"].astype(np.int64),
                       row_block=data["row_block"].astype(np.int64),
                       shard_offsets=data["shard_offsets"].astype(np.int64),
                       num_classes=int(data["num_classes"]), name=str(data["name"]),
                       metadata=str(data["metadata"]))
        except (OSError, KeyError, ValueError) as error:
            raise InstanceError(f"{path}: cannot read sparse data set: {error}") from None

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def load_cached(path: str | Path) -> SparseDataset:
        return SparseDataset.load(path)

    def describe(self) -> dict:
        return {"name": self.name, "samples": int(self.features.shape[0]),
                "features": int(self.features.shape[1]), "nnz": int(self.features.nnz),
                "blocks": self.num_blocks, "shards": self.num_shards,
                "classes": self.num_classes, **json.loads(self.metadata)}


def synthesize(instance: ParamServerInstance, rng: np.random.Generator,
               num_classes: int = 2) -> SparseDataset:
    """Sample-level data with exactly ``instance``'s graph: block ``b`` gets
    ``block_samples[b]`` rows and, for every edge ``(b, s, nnz)``, ``nnz`` distinct
    (row, feature) cells inside shard ``s``. Labels come from a random linear teacher."""
    per_feature = 4 * num_classes
    if np.any(instance.shard_bytes % per_feature):
        bad = int(np.flatnonzero(instance.shard_bytes % per_feature)[0])
        raise InstanceError(f"instance {instance.name!r}: shard_bytes[{bad}] = "
                            f"{instance.shard_bytes[bad]} is not a multiple of {per_feature} "
                            f"(4 bytes x {num_classes} classes per feature)")
    features_per_shard = instance.shard_bytes // per_feature
    shard_offsets = np.concatenate([[0], np.cumsum(features_per_shard)])
    row_offsets = np.concatenate([[0], np.cumsum(instance.block_samples)])
    rows, columns = [], []
    for block, shard, nnz in zip(instance.edge_block, instance.edge_shard, instance.edge_nnz,
                                 strict=True):
        samples, width = int(instance.block_samples[block]), int(features_per_shard[shard])
        if nnz > samples * width:
            raise InstanceError(f"instance {instance.name!r}: edge (block {block}, shard {shard})"
                                f" has nnz {nnz} > samples x features = {samples * width}")
        cells = rng.choice(samples * width, size=int(nnz), replace=False)
        rows.append(row_offsets[block] + cells // width)
        columns.append(shard_offsets[shard] + cells % width)
    row_index, column_index = np.concatenate(rows), np.concatenate(columns)
    shape = (int(row_offsets[-1]), int(shard_offsets[-1]))
    matrix = sp.csr_matrix((np.ones(row_index.size, dtype=np.float32),
                            (row_index, column_index)), shape=shape)
    matrix.sum_duplicates()
    teacher = rng.normal(size=(shape[1], num_classes))
    scores = matrix @ teacher + rng.gumbel(size=(shape[0], num_classes))
    labels = np.argmax(scores, axis=1)
    row_block = np.repeat(np.arange(instance.num_blocks), instance.block_samples)
    return SparseDataset(features=matrix, labels=labels, row_block=row_block,
                         shard_offsets=shard_offsets, num_classes=num_classes,
                         name=f"synthetic-{instance.name}")
