"""Candidate allocations for the parameter-server agent, and the features it scores them by.

A candidate is a variant of ``two_step``'s first two steps: a METIS partition of the block
co-access graph (``heuristics.param_server.co_access_graph``) with its own seed, balance
tolerance (``ufactor``) and target part weights, then the shards placed by
``heuristics.param_server.place_shards``. Part weights blend speed and bandwidth: with
``compute_share = c`` machine ``m`` gets a share proportional to
``1 / (c / speed[m] + (1 - c) / bandwidth[m])`` (speed and bandwidth each over their mean),
so ``c = 1`` is ``two_step``'s own rule (shares proportional to speed). Candidate 0 is always
``two_step``'s own partition (METIS seed 0, default ``ufactor``, ``c = 1``).

Refining a candidate (``heuristics.param_server.refine_moves``) is the expensive step; the
agent refines only the candidates its learned scorer ranks best (:mod:`agents.param_server.agent`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from envs.param_server.instance import ParamServerInstance
from envs.param_server.simulator import AllocationState
from heuristics.param_server import (
    co_access_graph,
    metis_blocks,
    partition_blocks,
    place_shards,
    refine_moves,
)

SEEDS = tuple(range(8))
UFACTORS = (30, 100)
COMPUTE_SHARES = (1.0, 0.6)
EDGE_NOISE = 0.3

FEATURES = ("pre_over_best_pre", "pre_rank", "traffic_over_best", "traffic_rank",
            "compute_imbalance", "time_spread", "comm_share", "is_two_step",
            "loose_balance", "bandwidth_aware", "machines_over_16", "bias")


@dataclass(frozen=True)
class Variant:
    seed: int
    ufactor: int
    compute_share: float

    @property
    def is_two_step(self) -> bool:
        return self.seed == 0 and self.ufactor == UFACTORS[0] and self.compute_share == 1.0


VARIANTS = (Variant(0, UFACTORS[0], 1.0),) + tuple(
    Variant(seed, ufactor, share) for seed in SEEDS for ufactor in UFACTORS
    for share in COMPUTE_SHARES if not Variant(seed, ufactor, share).is_two_step)


def target_shares(instance: ParamServerInstance, compute_share: float) -> list[float]:
    speed = instance.speed_nnz_per_s / instance.speed_nnz_per_s.mean()
    bandwidth = instance.bandwidth_bytes_per_s / instance.bandwidth_bytes_per_s.mean()
    weight = 1.0 / (compute_share / speed + (1.0 - compute_share) / bandwidth)
    shares = (weight / weight.sum()).tolist()
    shares[-1] = 1.0 - sum(shares[:-1])
    return shares


def partition(instance: ParamServerInstance, variant: Variant,
              graph: sp.csr_matrix | None = None) -> np.ndarray:
    """Block -> machine for one variant (``two_step``'s step 1 when ``variant.is_two_step``);
    ``graph``: the instance's co-access graph when already built."""
    graph = co_access_graph(instance) if graph is None else graph
    if variant.is_two_step or instance.num_machines == 1 or graph.nnz == 0 or \
            instance.num_blocks < instance.num_machines:
        return partition_blocks(instance)
    if variant.seed:  # symmetric multiplicative noise: METIS alone varies little with its seed
        rng = np.random.default_rng(variant.seed)
        noise = sp.triu(graph, k=1, format="csr")
        noise.data = np.exp(rng.normal(0.0, EDGE_NOISE, noise.nnz))
        graph = sp.csr_matrix(graph.multiply(noise + noise.T))
    return metis_blocks(instance, graph, target_shares(instance, variant.compute_share),
                        variant.seed, variant.ufactor)


@dataclass
class Candidate:
    variant: Variant
    state: AllocationState  # blocks and shards placed, not refined
    pre_s: float
    remote_bytes: int

    def refined(self) -> AllocationState:
        """A refined copy (the candidate's own state is left as it is)."""
        state = AllocationState.from_allocation(self.state.instance, self.state.allocation())
        refine_moves(state)
        return state


def candidates(instance: ParamServerInstance,
               variants: tuple[Variant, ...] = VARIANTS) -> list[Candidate]:
    """Every distinct variant's unrefined allocation (duplicate partitions dropped)."""
    seen: set[bytes] = set()
    found = []
    graph = co_access_graph(instance)
    for variant in variants:
        blocks = partition(instance, variant, graph)
        key = blocks.tobytes()
        if key in seen:
            continue
        seen.add(key)
        state = AllocationState(instance)
        for block, machine in enumerate(blocks):
            state.place_block(block, int(machine))
        place_shards(state)
        found.append(Candidate(variant, state, state.estimated_iteration_s, state.remote_bytes))
    return found


def feature_matrix(found: list[Candidate]) -> np.ndarray:
    """One row of :data:`FEATURES` per candidate (all scale-free)."""
    pre = np.array([c.pre_s for c in found])
    traffic = np.array([max(c.remote_bytes, 1) for c in found], dtype=float)
    rows = []
    for index, candidate in enumerate(found):
        state, instance = candidate.state, candidate.state.instance
        share = instance.speed_nnz_per_s / instance.speed_nnz_per_s.sum()
        work = np.bincount(state.block_machine, weights=instance.block_nnz,
                           minlength=instance.num_machines) / instance.block_nnz.sum()
        times = state.machine_s
        rows.append([
            pre[index] / pre.min() - 1.0,
            np.argsort(np.argsort(pre))[index] / len(found),
            traffic[index] / traffic.min() - 1.0,
            np.argsort(np.argsort(traffic))[index] / len(found),
            float(np.max(work / share)) - 1.0,
            float((times.max() - times.mean()) / times.max()),
            float(1.0 - state.compute_s[np.argmax(times)] / times.max()),
            float(candidate.variant.is_two_step),
            float(candidate.variant.ufactor != UFACTORS[0]),
            float(candidate.variant.compute_share != 1.0),
            instance.num_machines / 16.0,
            1.0,
        ])
    return np.array(rows, dtype=float)
