"""Parameter-server allocation heuristics: ``HEURISTICS[name](instance) -> Allocation``.

- ``hash``: what stock parameter servers do. Data blocks are split into contiguous ranges
  (block ``b`` to machine ``floor(b * M / B)``) and each shard goes to ``crc32(key) mod M``.
- ``greedy_bytes``: largest first onto the least-loaded machine. Blocks by non-zeros onto the
  machine whose compute would finish first; shards by bytes onto the machine holding the
  fewest shard bytes per unit of bandwidth (TensorFlow-style placement by bytes).
- ``two_step`` (after Duan et al., IEEE TNSE 2021): (1) partition the blocks with multilevel
  graph partitioning (pymetis) of the block co-access graph (edge weight = bytes of the shards
  two blocks share, each over the number of other blocks touching it), target part weights
  proportional to machine speed; (2) place shards,
  largest traffic first, on the machine with the most accesses whose resulting estimated
  iteration time stays within the load bound (else the least-bad machine); (3) refinement
  moves: repeatedly move the block or shard of the bottleneck machine that most lowers
  ``(iteration_s, sum of machine times)``, then sweeps over all items (see ``refine_moves``).

Every heuristic returns an allocation within every machine's memory (``repair_capacity``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import pymetis
import scipy.sparse as sp

from envs.param_server.instance import Allocation, InstanceError, ParamServerInstance
from envs.param_server.simulator import AllocationState

Planner = Callable[[ParamServerInstance], Allocation]

_RELATIVE_TOLERANCE = 1e-9


def hash_allocation(instance: ParamServerInstance) -> Allocation:
    num_machines = instance.num_machines
    blocks = np.arange(instance.num_blocks) * num_machines // instance.num_blocks
    shards = np.array([zlib.crc32(f"shard-{s}".encode()) % num_machines
                       for s in range(instance.num_shards)])
    return repair_capacity(instance, blocks, shards)


def greedy_bytes(instance: ParamServerInstance) -> Allocation:
    num_machines = instance.num_machines
    used = np.zeros(num_machines, dtype=np.int64)
    compute_s = np.zeros(num_machines)
    blocks = np.zeros(instance.num_blocks, dtype=np.int64)
    for block in np.argsort(-instance.block_nnz, kind="stable"):
        fits = used + instance.block_bytes[block] <= instance.memory_bytes
        finish = compute_s + instance.block_nnz[block] / instance.speed_nnz_per_s
        machine = int(np.argmin(np.where(fits, finish, np.inf)))
        blocks[block] = machine
        compute_s[machine] = finish[machine]
        used[machine] += instance.block_bytes[block]
    shard_load = np.zeros(num_machines)
    shards = np.zeros(instance.num_shards, dtype=np.int64)
    for shard in np.argsort(-instance.shard_bytes, kind="stable"):
        fits = used + instance.shard_bytes[shard] <= instance.memory_bytes
        load = shard_load + instance.shard_bytes[shard] / instance.bandwidth_bytes_per_s
        machine = int(np.argmin(np.where(fits, load, np.inf)))
        shards[shard] = machine
        shard_load[machine] = load[machine]
        used[machine] += instance.shard_bytes[shard]
    return Allocation(blocks, shards)


def two_step(instance: ParamServerInstance, load_tolerance: float = 0.0,
             refine: bool = True, max_moves: int | None = None) -> Allocation:
    blocks = partition_blocks(instance)
    state = AllocationState(instance)
    for block, machine in enumerate(blocks):
        state.place_block(block, int(machine))
    place_shards(state, load_tolerance)
    if refine:
        refine_moves(state, max_moves)
    return state.allocation()


def co_access_graph(instance: ParamServerInstance) -> sp.csr_matrix:
    """Block x block co-access weights (zero diagonal).

    The clique expansion of the block-shard hypergraph: a shard touched by ``k`` blocks adds
    ``bytes / (k - 1)`` to each pair of them, so a shard everybody touches (whose traffic no
    partition avoids) does not swamp the shards that partitioning can keep local.
    """
    incidence = instance.incidence.astype(float)
    touching = np.asarray(incidence.sum(axis=0)).ravel()
    per_pair = instance.shard_bytes / np.maximum(touching - 1.0, 1.0)
    weights = incidence @ sp.diags(per_pair) @ incidence.T
    weights = sp.csr_matrix(weights)
    weights.setdiag(0)
    weights.eliminate_zeros()
    return weights


def partition_blocks(instance: ParamServerInstance) -> np.ndarray:
    """Step 1: METIS k-way partition of the co-access graph, balanced by work and speed."""
    num_machines = instance.num_machines
    if num_machines == 1:
        return np.zeros(instance.num_blocks, dtype=np.int64)
    graph = co_access_graph(instance)
    if graph.nnz == 0 or instance.num_blocks < num_machines:
        return _lpt_blocks(instance)
    shares = (instance.speed_nnz_per_s / instance.speed_nnz_per_s.sum()).tolist()
    shares[-1] = 1.0 - sum(shares[:-1])
    return metis_blocks(instance, graph, shares)


def metis_blocks(instance: ParamServerInstance, graph: sp.csr_matrix, shares: list[float],
                 seed: int = 0, ufactor: int | None = None) -> np.ndarray:
    """Block -> machine: METIS k-way partition of ``graph`` (block co-access weights) with
    block work as vertex weights and target ``shares`` per machine (``seed``, ``ufactor``:
    METIS options; ``ufactor`` None is METIS's default), repaired so no machine is empty."""
    scale = 1e6 / graph.data.max()
    edge_weights = np.maximum(1, np.round(graph.data * scale)).astype(np.int64)
    vertex_weights = np.maximum(1, np.round(
        instance.block_nnz * 1e5 / instance.block_nnz.max())).astype(np.int64)
    adjacency = pymetis.CSRAdjacency(graph.indptr.astype(np.int64),
                                     graph.indices.astype(np.int64))
    options = (pymetis.Options(seed=seed) if ufactor is None
               else pymetis.Options(seed=seed, ufactor=ufactor))
    _, parts = pymetis.part_graph(instance.num_machines, adjacency, vweights=vertex_weights,
                                  eweights=edge_weights, tpwgts=shares, options=options)
    return _repair_blocks(instance, np.asarray(parts, dtype=np.int64))


def _lpt_blocks(instance: ParamServerInstance) -> np.ndarray:
    compute_s = np.zeros(instance.num_machines)
    used = np.zeros(instance.num_machines, dtype=np.int64)
    blocks = np.zeros(instance.num_blocks, dtype=np.int64)
    for block in np.argsort(-instance.block_nnz, kind="stable"):
        finish = compute_s + instance.block_nnz[block] / instance.speed_nnz_per_s
        fits = used + instance.block_bytes[block] <= instance.memory_bytes
        machine = int(np.argmin(np.where(fits, finish, np.inf)))
        blocks[block], compute_s[machine] = machine, finish[machine]
        used[machine] += instance.block_bytes[block]
    return blocks


def _repair_blocks(instance: ParamServerInstance, blocks: np.ndarray) -> np.ndarray:
    """Move the smallest blocks off machines that leave too little room for shards."""
    capacity = _block_capacity(instance)
    used = np.bincount(blocks, weights=instance.block_bytes, minlength=instance.num_machines)
    for machine in np.flatnonzero(used > capacity):
        on_machine = np.flatnonzero(blocks == machine)
        for block in on_machine[np.argsort(instance.block_bytes[on_machine])]:
            if used[machine] <= capacity[machine]:
                break
            room = capacity - used - instance.block_bytes[block]
            room[machine] = -np.inf
            target = int(np.argmax(room))
            if room[target] < 0:
                raise InstanceError(f"instance {instance.name!r}: cannot fit block {block} on "
                                    f"any machine")
            blocks[block] = target
            used[machine] -= instance.block_bytes[block]
            used[target] += instance.block_bytes[block]
    return blocks


def _block_capacity(instance: ParamServerInstance) -> np.ndarray:
    """Memory left for blocks if shards were spread in proportion to memory."""
    share = instance.memory_bytes / instance.memory_bytes.sum()
    return instance.memory_bytes - share * instance.shard_bytes.sum() - instance.shard_bytes.max()


def place_shards(state: AllocationState, load_tolerance: float = 0.0) -> None:
    """Step 2: each shard where most of its accesses are, under the load bound."""
    instance = state.instance
    accessors = (state.access_count > 0).sum(axis=1)
    order = np.lexsort((np.arange(instance.num_shards), -instance.shard_bytes * accessors))
    for shard in order:
        if state.shard_machine[shard] >= 0:
            continue
        rows = state.shard_machine_s(int(shard)).max(axis=1)
        fits = state.shard_fits(int(shard))
        bound = state.estimated_iteration_s * (1.0 + load_tolerance)
        counts = state.access_count[shard]
        candidates = np.lexsort((rows, -counts))
        chosen = next((int(c) for c in candidates
                       if fits[c] and rows[c] <= bound * (1 + _RELATIVE_TOLERANCE)), None)
        if chosen is None:
            chosen = int(np.argmin(np.where(fits, rows, np.inf)))
        state.place_shard(int(shard), chosen)


def refine_moves(state: AllocationState, max_moves: int | None = None,
                 max_sweeps: int = 2) -> int:
    """Step 3: improving moves under the key ``(iteration_s, sum of machine times)``.

    First the best move among the bottleneck machine's blocks and shards, repeatedly; when
    none helps, one sweep over every block and shard (each moved to its best machine if that
    improves the key, which lowers traffic without raising the iteration time); repeat until a
    sweep changes nothing, ``max_sweeps`` sweeps ran or ``max_moves`` moves were made.
    """
    instance = state.instance
    limit = max_moves if max_moves is not None else 4 * (instance.num_blocks + instance.num_shards)
    moves = sweeps = 0
    while moves < limit:
        times = state.machine_s
        best, best_key = None, (times.max(), times.sum())
        bottleneck = int(np.argmax(times))
        for item in _items(state, bottleneck):
            best, best_key = _better(state, item, best, best_key)
        if best is not None:
            _apply(state, best)
            moves += 1
            continue
        if sweeps == max_sweeps:
            break
        sweeps += 1
        swept = 0
        for item in _items(state, None):
            if moves >= limit:
                break
            times = state.machine_s
            found, _ = _better(state, item, None, (times.max(), times.sum()))
            if found is not None:
                _apply(state, found)
                moves += 1
                swept += 1
        if swept == 0:
            break
    return moves


def _items(state: AllocationState, machine: int | None) -> list[tuple[str, int]]:
    blocks = np.arange(state.instance.num_blocks)
    shards = np.arange(state.instance.num_shards)
    if machine is not None:
        blocks = blocks[state.block_machine == machine]
        shards = shards[state.shard_machine == machine]
    else:  # a shard that only its owner touches costs nothing where it is: moving cannot help
        touched = state.access_count > 0
        remote = touched.sum(axis=1) - touched[shards, state.shard_machine]
        shards = shards[remote > 0]
    return [("block", int(b)) for b in blocks] + [("shard", int(s)) for s in shards]


def _apply(state: AllocationState, move: tuple[tuple[str, int], int]) -> None:
    (kind, index), machine = move
    (state.move_block if kind == "block" else state.move_shard)(index, machine)


def _better(state: AllocationState, item: tuple[str, int], best, best_key):
    kind, index = item
    if kind == "block":
        rows, fits = state.block_machine_s(index), state.block_fits(index)
    else:
        rows, fits = state.shard_machine_s(index), state.shard_fits(index)
    maxima, sums = rows.max(axis=1), rows.sum(axis=1)
    for machine in np.flatnonzero(fits):
        key = (maxima[machine], sums[machine])
        tolerance = _RELATIVE_TOLERANCE * best_key[0]
        if key[0] < best_key[0] - tolerance or (
                key[0] <= best_key[0] + tolerance and key[1] < best_key[1] - tolerance):
            best, best_key = (item, int(machine)), key
    return best, best_key


def repair_capacity(instance: ParamServerInstance, blocks: np.ndarray,
                    shards: np.ndarray) -> Allocation:
    """Move the smallest items off over-full machines onto the machine with the most room."""
    blocks, shards = np.array(blocks, dtype=np.int64), np.array(shards, dtype=np.int64)
    used = (np.bincount(blocks, weights=instance.block_bytes, minlength=instance.num_machines)
            + np.bincount(shards, weights=instance.shard_bytes, minlength=instance.num_machines))
    for machine in np.flatnonzero(used > instance.memory_bytes):
        items = [("block", b, instance.block_bytes[b]) for b in np.flatnonzero(blocks == machine)]
        items += [("shard", s, instance.shard_bytes[s]) for s in np.flatnonzero(shards == machine)]
        for kind, index, size in sorted(items, key=lambda item: item[2]):
            if used[machine] <= instance.memory_bytes[machine]:
                break
            room = instance.memory_bytes - used - size
            room[machine] = -np.inf
            target = int(np.argmax(room))
            if room[target] < 0:
                raise InstanceError(f"instance {instance.name!r}: no machine has room for "
                                    f"{kind} {index} ({size} bytes)")
            (blocks if kind == "block" else shards)[index] = target
            used[machine] -= size
            used[target] += size
    return Allocation(blocks, shards)


HEURISTICS: dict[str, Planner] = {
    "hash": hash_allocation,
    "greedy_bytes": greedy_bytes,
    "two_step": two_step,
}
