"""The iteration-time model of bulk-synchronous parameter-server training (the one model).

For an allocation (``block_machine[b]``, ``shard_machine[s]``) on machines ``m = 0..M-1``:

- ``access[s, m]``: some block on ``m`` touches shard ``s``. A worker pulls every shard its
  blocks touch, whole, once per iteration, and pushes a gradient of the same size back.
- ``owner(s) = shard_machine[s]``; remote accessors ``R(s) = {m : access[s, m], m != owner(s)}``.
- ``compute_s[m] = sum(block_nnz[b] for b on m) / speed_nnz_per_s[m]``.
- ``link_bytes[m] = sum(2 * shard_bytes[s] for s with m in R(s))``         (own pulls + pushes)
  ``              + sum(2 * shard_bytes[s] * |R(s)| for s with owner(s) = m)``  (serving them)
- ``comm_s[m] = link_bytes[m] / bandwidth_bytes_per_s[m]`` (all bytes through m's link, both
  directions together; a local access costs nothing).
- ``machine_s[m] = compute_s[m] + comm_s[m]``; ``iteration_s = max over m of machine_s[m]``.
- ``remote_bytes = sum over s of 2 * shard_bytes[s] * |R(s)|`` (every byte that crosses the
  network once; ``sum(link_bytes) = 2 * remote_bytes``).
- ``memory_used[m] = sum(block_bytes[b] on m) + sum(shard_bytes[s] owned by m)``; an allocation
  is feasible when ``memory_used <= memory_bytes`` on every machine.

Partial allocations (``-1`` = not yet placed) are estimated by :class:`AllocationState`: placed
blocks and placed shards count exactly; an unplaced shard already touched by ``k >= 2``
machines charges ``2 * shard_bytes[s]`` to each of them, the least any owner choice can cost
each accessor. The estimate never decreases as items are placed and equals ``iteration_s``
once everything is placed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from envs.param_server.instance import Allocation, InstanceError, ParamServerInstance


@dataclass(frozen=True)
class IterationResult:
    iteration_s: float
    remote_bytes: int
    machine_s: np.ndarray
    compute_s: np.ndarray
    comm_s: np.ndarray
    link_bytes: np.ndarray
    memory_used: np.ndarray

    @property
    def bottleneck(self) -> int:
        return int(np.argmax(self.machine_s))

    def summary(self) -> dict[str, float]:
        return {"iteration_s": self.iteration_s, "remote_bytes": self.remote_bytes,
                "bottleneck": self.bottleneck}


def evaluate(instance: ParamServerInstance, allocation: Allocation) -> IterationResult:
    """Time per iteration and traffic of a complete allocation (vectorised, exact)."""
    allocation.check(instance)
    num_machines = instance.num_machines
    placement = sp.csr_matrix(
        (np.ones(instance.num_blocks), (np.arange(instance.num_blocks),
                                        allocation.block_machine)),
        shape=(instance.num_blocks, num_machines))
    access = np.asarray((instance.incidence.T @ placement).todense()) > 0
    owned = np.zeros((instance.num_shards, num_machines), dtype=bool)
    owned[np.arange(instance.num_shards), allocation.shard_machine] = True
    remote = access & ~owned
    num_remote = remote.sum(axis=1)
    twice_bytes = 2.0 * instance.shard_bytes
    link_bytes = remote.T.astype(float) @ twice_bytes + owned.T.astype(float) @ (
        twice_bytes * num_remote)
    compute_s = np.bincount(allocation.block_machine, weights=instance.block_nnz,
                            minlength=num_machines) / instance.speed_nnz_per_s
    comm_s = link_bytes / instance.bandwidth_bytes_per_s
    machine_s = compute_s + comm_s
    memory_used = (np.bincount(allocation.block_machine, weights=instance.block_bytes,
                               minlength=num_machines)
                   + np.bincount(allocation.shard_machine, weights=instance.shard_bytes,
                                 minlength=num_machines)).astype(np.int64)
    return IterationResult(
        iteration_s=float(machine_s.max()), remote_bytes=int(round(float(
            twice_bytes @ num_remote))), machine_s=machine_s, compute_s=compute_s, comm_s=comm_s,
        link_bytes=link_bytes, memory_used=memory_used)


def capacity_violations(instance: ParamServerInstance, allocation: Allocation) -> list[str]:
    """Human-readable list of machines whose memory the allocation exceeds (empty if none)."""
    used = evaluate(instance, allocation).memory_used
    return [f"machine {m}: {int(used[m])} bytes > memory_bytes {int(instance.memory_bytes[m])}"
            for m in np.flatnonzero(used > instance.memory_bytes)]


def check_feasible(instance: ParamServerInstance, allocation: Allocation) -> None:
    violations = capacity_violations(instance, allocation)
    if violations:
        raise InstanceError("allocation exceeds memory capacity: " + "; ".join(violations))


class AllocationState:
    """Incremental version of the model for partial allocations (the env and local search).

    ``link_bytes`` holds exact bytes for placed shards plus the lower bound of unplaced ones.
    """

    def __init__(self, instance: ParamServerInstance) -> None:
        self.instance = instance
        num_machines = instance.num_machines
        self.block_machine = np.full(instance.num_blocks, -1, dtype=np.int64)
        self.shard_machine = np.full(instance.num_shards, -1, dtype=np.int64)
        self.access_count = np.zeros((instance.num_shards, num_machines), dtype=np.int64)
        self.compute_s = np.zeros(num_machines)
        self.link_bytes = np.zeros(num_machines)
        self.memory_used = np.zeros(num_machines, dtype=np.int64)
        self._twice_bytes = 2.0 * instance.shard_bytes.astype(float)
        self._block_seconds = instance.block_nnz[:, None] / instance.speed_nnz_per_s[None, :]
        self._columns = np.arange(num_machines)

    @classmethod
    def from_allocation(cls, instance: ParamServerInstance,
                        allocation: Allocation) -> AllocationState:
        allocation.check(instance)
        state = cls(instance)
        for block, machine in enumerate(allocation.block_machine):
            state.place_block(block, int(machine))
        for shard, machine in enumerate(allocation.shard_machine):
            state.place_shard(shard, int(machine))
        return state

    # model pieces ------------------------------------------------------------------------
    def _link_rows(self, access: np.ndarray, owners: np.ndarray,
                   twice_bytes: np.ndarray) -> np.ndarray:
        """Per-shard link bytes on every machine; ``access`` is (..., k, M) bool."""
        placed = owners >= 0
        is_owner = self._columns == owners[..., None]
        remote = access & ~is_owner
        num_remote = remote.sum(axis=-1)
        exact = twice_bytes[..., None] * (remote + is_owner * num_remote[..., None])
        bound = twice_bytes[..., None] * access * (access.sum(axis=-1) >= 2)[..., None]
        return np.where(placed[..., None], exact, bound)

    def _shard_link(self, shards: np.ndarray) -> np.ndarray:
        return self._link_rows(self.access_count[shards] > 0, self.shard_machine[shards],
                               self._twice_bytes[shards]).sum(axis=0)

    @property
    def machine_s(self) -> np.ndarray:
        return self.compute_s + self.link_bytes / self.instance.bandwidth_bytes_per_s

    @property
    def estimated_iteration_s(self) -> float:
        return float(self.machine_s.max())

    @property
    def remote_bytes(self) -> int:
        """Bytes crossing the network for the placed shards."""
        placed = np.flatnonzero(self.shard_machine >= 0)
        access = self.access_count[placed] > 0
        remote = access & (self._columns != self.shard_machine[placed][:, None])
        return int(round(float(self._twice_bytes[placed] @ remote.sum(axis=1))))

    def allocation(self) -> Allocation:
        if np.any(self.block_machine < 0) or np.any(self.shard_machine < 0):
            raise InstanceError("allocation is incomplete: some blocks or shards are unplaced")
        return Allocation(self.block_machine.copy(), self.shard_machine.copy())

    # mutations ---------------------------------------------------------------------------
    def place_block(self, block: int, machine: int) -> None:
        self._set_block(block, machine)

    def place_shard(self, shard: int, machine: int) -> None:
        self._set_shard(shard, machine)

    def _set_block(self, block: int, machine: int) -> None:
        shards = self.instance.block_shards[block]
        before = self._shard_link(shards)
        old = self.block_machine[block]
        if old >= 0:
            self.access_count[shards, old] -= 1
            self.compute_s[old] -= self._block_seconds[block, old]
            self.memory_used[old] -= self.instance.block_bytes[block]
        if machine >= 0:
            self.access_count[shards, machine] += 1
            self.compute_s[machine] += self._block_seconds[block, machine]
            self.memory_used[machine] += self.instance.block_bytes[block]
        self.block_machine[block] = machine
        self.link_bytes += self._shard_link(shards) - before

    def _set_shard(self, shard: int, machine: int) -> None:
        index = np.array([shard])
        before = self._shard_link(index)
        old = self.shard_machine[shard]
        if old >= 0:
            self.memory_used[old] -= self.instance.shard_bytes[shard]
        if machine >= 0:
            self.memory_used[machine] += self.instance.shard_bytes[shard]
        self.shard_machine[shard] = machine
        self.link_bytes += self._shard_link(index) - before

    move_block = _set_block
    move_shard = _set_shard

    # what-if queries (nothing is changed) -------------------------------------------------
    def block_machine_s(self, block: int) -> np.ndarray:
        """``(M, M)``: row ``c`` = every machine's time if ``block`` were (re)placed on ``c``."""
        shards = self.instance.block_shards[block]
        counts = self.access_count[shards].copy()
        old = self.block_machine[block]
        compute = np.broadcast_to(self.compute_s, (self.instance.num_machines,) * 2).copy()
        if old >= 0:
            counts[:, old] -= 1
            compute[:, old] -= self._block_seconds[block, old]
        compute[self._columns, self._columns] += self._block_seconds[block]
        base = counts > 0
        access = base[None, :, :] | (self._columns[:, None, None] == self._columns[None, None, :])
        owners = np.broadcast_to(self.shard_machine[shards], access.shape[:2])
        twice = np.broadcast_to(self._twice_bytes[shards], access.shape[:2])
        after = self._link_rows(access, owners, twice).sum(axis=1)
        link = self.link_bytes - self._shard_link(shards) + after
        return compute + link / self.instance.bandwidth_bytes_per_s

    def shard_machine_s(self, shard: int) -> np.ndarray:
        """``(M, M)``: row ``c`` = every machine's time if ``shard`` were (re)placed on ``c``."""
        num_machines = self.instance.num_machines
        index = np.array([shard])
        access = np.broadcast_to(self.access_count[shard] > 0, (num_machines, 1, num_machines))
        owners = self._columns[:, None]
        twice = np.full((num_machines, 1), self._twice_bytes[shard])
        after = self._link_rows(access, owners, twice).sum(axis=1)
        link = self.link_bytes - self._shard_link(index) + after
        return self.compute_s + link / self.instance.bandwidth_bytes_per_s

    def block_fits(self, block: int) -> np.ndarray:
        extra = self.instance.block_bytes[block] * (self._columns != self.block_machine[block])
        return self.memory_used + extra <= self.instance.memory_bytes

    def shard_fits(self, shard: int) -> np.ndarray:
        extra = self.instance.shard_bytes[shard] * (self._columns != self.shard_machine[shard])
        return self.memory_used + extra <= self.instance.memory_bytes
