"""Instance generators (Jumanji style: ``generator(rng) -> ParamServerInstance``).

- :class:`ZipfTopicGenerator`: synthetic sparse data with Zipf feature popularity, topic
  clusters and a tunable sparsity (density of the block x shard graph).
- :class:`ClusteredToyGenerator`: disjoint clusters on identical machines; its optimum is known
  (:meth:`ClusteredToyGenerator.optimum_s`): every cluster on its own machine, no traffic.
- :class:`DatasetGenerator`: a fixed real data set (see :mod:`envs.param_server.dataset`) on
  machines drawn from a :class:`MachineProfile`.
- :class:`MixtureGenerator`: picks one of several generators per call (agent training).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from envs.param_server.dataset import SparseDataset
from envs.param_server.instance import ParamServerInstance


@dataclass(frozen=True)
class MachineProfile:
    """How machines are drawn: base speed and bandwidth, spread, and memory headroom.

    With ``heterogeneity = h`` each machine's speed and bandwidth are the base times an
    independent uniform factor in ``[1 - h, 1 + h]``. Memory per machine is
    ``memory_slack * total_bytes / M + largest_item_bytes`` (the instance's slack rule holds).
    """

    speed_nnz_per_s: float = 2.0e7
    bandwidth_bytes_per_s: float = 1.25e8
    heterogeneity: float = 0.0
    memory_slack: float = 1.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.heterogeneity < 1.0:
            raise ValueError(f"heterogeneity must be in [0, 1), got {self.heterogeneity}")
        if self.memory_slack < 1.0:
            raise ValueError(f"memory_slack must be >= 1, got {self.memory_slack}")
        if self.speed_nnz_per_s <= 0 or self.bandwidth_bytes_per_s <= 0:
            raise ValueError("speed_nnz_per_s and bandwidth_bytes_per_s must be positive")

    def draw(self, rng: np.random.Generator, num_machines: int, block_bytes: np.ndarray,
             shard_bytes: np.ndarray) -> dict[str, np.ndarray]:
        spread = self.heterogeneity
        speed = self.speed_nnz_per_s * rng.uniform(1 - spread, 1 + spread, num_machines)
        bandwidth = self.bandwidth_bytes_per_s * rng.uniform(1 - spread, 1 + spread,
                                                             num_machines)
        total = float(block_bytes.sum() + shard_bytes.sum())
        largest = int(max(block_bytes.max(), shard_bytes.max()))
        memory = np.full(num_machines, int(np.ceil(self.memory_slack * total / num_machines))
                         + largest, dtype=np.int64)
        return {"speed_nnz_per_s": speed, "bandwidth_bytes_per_s": bandwidth,
                "memory_bytes": memory}


def _with_machines(name: str, block_samples: np.ndarray, shard_bytes: np.ndarray,
                   edges: np.ndarray, machines: dict[str, np.ndarray]) -> ParamServerInstance:
    return ParamServerInstance(name=name, block_samples=block_samples, shard_bytes=shard_bytes,
                               edge_block=edges[:, 0], edge_shard=edges[:, 1],
                               edge_nnz=edges[:, 2], **machines)


def _block_bytes(samples: np.ndarray, edges: np.ndarray) -> np.ndarray:
    nnz = np.bincount(edges[:, 0], weights=edges[:, 2], minlength=samples.size)
    return (8 * nnz + 4 * samples).astype(np.int64)


@dataclass(frozen=True)
class ZipfTopicGenerator:
    """Synthetic sparse training data.

    Shards get a random topic and two Zipf popularity ranks (within their topic and overall);
    each block gets a topic and touches ``k ~ Binomial(num_shards, density)`` distinct shards
    (at least one), drawn without replacement with probability
    ``topic_affinity * zipf_within_topic + (1 - topic_affinity) * zipf_overall``. A block has
    ``samples`` in ``samples_range`` and ``samples * nnz_per_sample`` non-zeros, spread over its
    shards in proportion to popularity (each edge at least one). Shard sizes are uniform in
    ``shard_bytes_range`` (multiples of 8 bytes: two float32 classes per feature).
    """

    num_blocks: int = 64
    num_shards: int = 256
    num_machines: int = 4
    num_topics: int = 8
    zipf_exponent: float = 1.1
    density: float = 0.08
    topic_affinity: float = 0.8
    samples_range: tuple[int, int] = (256, 2048)
    nnz_per_sample: float = 40.0
    shard_bytes_range: tuple[int, int] = (4096, 12288)
    machines: MachineProfile = field(default_factory=MachineProfile)

    def __post_init__(self) -> None:
        if self.num_blocks < 1 or self.num_shards < 1 or self.num_machines < 1:
            raise ValueError("num_blocks, num_shards and num_machines must be >= 1")
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {self.density}")
        if not 0.0 <= self.topic_affinity <= 1.0:
            raise ValueError(f"topic_affinity must be in [0, 1], got {self.topic_affinity}")
        if self.num_topics < 1:
            raise ValueError(f"num_topics must be >= 1, got {self.num_topics}")

    def __call__(self, rng: np.random.Generator) -> ParamServerInstance:
        num_shards = self.num_shards
        shard_topic = rng.integers(0, self.num_topics, num_shards)
        overall = _zipf_weights(rng.permutation(num_shards), self.zipf_exponent)
        within = np.zeros(num_shards)
        for topic in range(self.num_topics):
            members = np.flatnonzero(shard_topic == topic)
            within[members] = _zipf_weights(rng.permutation(members.size), self.zipf_exponent)
        block_topic = rng.integers(0, self.num_topics, self.num_blocks)
        samples = rng.integers(self.samples_range[0], self.samples_range[1] + 1, self.num_blocks)
        edges = []
        for block in range(self.num_blocks):
            local = within * (shard_topic == block_topic[block])
            local = local / local.sum() if local.sum() > 0 else overall
            probability = self.topic_affinity * local + (1 - self.topic_affinity) * overall
            probability /= probability.sum()
            support = int(np.count_nonzero(probability))
            count = int(np.clip(rng.binomial(num_shards, self.density), 1, support))
            shards = np.sort(rng.choice(num_shards, size=count, replace=False, p=probability))
            total_nnz = max(int(samples[block] * self.nnz_per_sample), count)
            weights = probability[shards] / probability[shards].sum()
            nnz = 1 + rng.multinomial(total_nnz - count, weights)
            edges.extend((block, int(s), int(n)) for s, n in zip(shards, nnz, strict=True))
        edge_array = np.array(edges, dtype=np.int64)
        low, high = self.shard_bytes_range
        shard_bytes = 8 * rng.integers(low // 8, high // 8 + 1, num_shards)
        machines = self.machines.draw(rng, self.num_machines, _block_bytes(samples, edge_array),
                                      shard_bytes)
        return _with_machines(f"zipf-topics-b{self.num_blocks}-s{num_shards}-m"
                              f"{self.num_machines}", samples, shard_bytes, edge_array, machines)


def _zipf_weights(ranks: np.ndarray, exponent: float) -> np.ndarray:
    return 1.0 / np.power(ranks + 1.0, exponent)


@dataclass(frozen=True)
class ClusteredToyGenerator:
    """``M`` identical machines and ``M`` disjoint clusters of equal work.

    Cluster ``c`` has ``blocks_per_cluster`` blocks (``samples`` samples, ``nnz_per_edge``
    non-zeros on each of its shards) that touch only its own ``shards_per_cluster`` shards;
    indices are shuffled. Optimum: each cluster with its shards on its own machine, no
    traffic, ``iteration_s = blocks_per_cluster * block_nnz / speed`` -- which equals the
    compute lower bound ``total_nnz / (M * speed)``, so nothing can beat it.
    """

    num_machines: int = 3
    blocks_per_cluster: int = 3
    shards_per_cluster: int = 4
    samples: int = 64
    nnz_per_edge: int = 100
    shard_bytes: int = 8192
    speed_nnz_per_s: float = 1.0e6
    bandwidth_bytes_per_s: float = 1.0e6

    def __call__(self, rng: np.random.Generator) -> ParamServerInstance:
        clusters = self.num_machines
        num_blocks = clusters * self.blocks_per_cluster
        num_shards = clusters * self.shards_per_cluster
        block_perm = rng.permutation(num_blocks)
        shard_perm = rng.permutation(num_shards)
        edges = []
        for cluster in range(clusters):
            for i in range(self.blocks_per_cluster):
                block = block_perm[cluster * self.blocks_per_cluster + i]
                for j in range(self.shards_per_cluster):
                    shard = shard_perm[cluster * self.shards_per_cluster + j]
                    edges.append((int(block), int(shard), self.nnz_per_edge))
        edge_array = np.array(sorted(edges), dtype=np.int64)
        samples = np.full(num_blocks, self.samples, dtype=np.int64)
        shard_bytes = np.full(num_shards, self.shard_bytes, dtype=np.int64)
        machines = MachineProfile(self.speed_nnz_per_s, self.bandwidth_bytes_per_s).draw(
            rng, clusters, _block_bytes(samples, edge_array), shard_bytes)
        return _with_machines(f"toy-clusters-m{clusters}", samples, shard_bytes, edge_array,
                              machines)

    def optimum_s(self) -> float:
        cluster_nnz = self.blocks_per_cluster * self.shards_per_cluster * self.nnz_per_edge
        return cluster_nnz / self.speed_nnz_per_s


@dataclass(frozen=True)
class DatasetGenerator:
    """A fixed data set (real or synthetic) on freshly drawn machines."""

    dataset_path: str | Path
    num_machines: int = 4
    machines: MachineProfile = field(default_factory=MachineProfile)

    def __call__(self, rng: np.random.Generator) -> ParamServerInstance:
        dataset = SparseDataset.load_cached(self.dataset_path)
        return dataset.to_instance(self.num_machines, self.machines, rng)


@dataclass(frozen=True)
class MixtureGenerator:
    """Draws from one of ``generators`` chosen uniformly at random per call."""

    generators: Sequence

    def __call__(self, rng: np.random.Generator) -> ParamServerInstance:
        return self.generators[int(rng.integers(len(self.generators)))](rng)
