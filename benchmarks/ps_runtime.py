"""A real parameter-server training loop over torch.distributed (gloo) on 127.0.0.1.

One process per machine of the instance; each is a worker (its data blocks) and a server (its
parameter shards). The model is softmax regression on the data set's sparse features (a
``features x classes`` float32 weight matrix laid out shard after shard). Per iteration, on
every process (bulk-synchronous):

1. pull: every server sends each peer the shards that the peer's blocks touch, whole, in one
   message per peer (``isend``/``irecv``); a process reads its own shards locally;
2. compute: softmax-regression gradient on the worker's samples (``torch.sparse`` CSR);
3. push: the gradient rows of every remote shard go back to their owner, one message per peer;
4. update: each server applies SGD to its shards with the gradients of all workers.

The allocation decides only where data and parameters live; the arithmetic is identical, so
the loss trajectory is the same under every allocation (up to float summation order).

Link emulation (``bandwidth_bytes_per_s``; ``None`` = raw loopback): after each exchange
phase a process sleeps until ``(bytes it sent + bytes it received in the phase) / bandwidth``
seconds have passed since the phase began. Loopback moves gigabytes per second, so without
this every allocation would look alike; with it, each process's link behaves like the
simulator's (all bytes through the machine's link at its bandwidth). Bytes are the payload
of the tensors sent and received (gloo's framing is not counted).
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from envs.param_server.dataset import SparseDataset
from envs.param_server.instance import Allocation, InstanceError, ParamServerInstance


@dataclass(frozen=True)
class RealRunConfig:
    iterations: int = 5
    rounds: int = 3
    warmup_iterations: int = 2
    bandwidth_bytes_per_s: float | None = 12.5e6
    learning_rate: float = 2.0
    timeout_s: float = 120.0


@dataclass
class RealResult:
    """Measured on the real loop for one allocation.

    ``iteration_s``: median over rounds of the slowest rank's mean iteration time in that
    round; bytes are per iteration; ``losses`` is the mean training loss at every iteration.
    """

    iteration_s: float
    iteration_s_per_rank: list[float]
    compute_s_per_rank: list[float]
    sent_bytes_per_rank: list[int]
    received_bytes_per_rank: list[int]
    remote_bytes: int
    nnz_per_rank: list[int]
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_allocations(dataset: SparseDataset, instance: ParamServerInstance,
                    allocations: dict[str, Allocation],
                    config: RealRunConfig = RealRunConfig()) -> dict[str, RealResult]:
    """Train under every allocation in turn with one process per machine; measured results."""
    if not dataset.matches(instance):
        raise InstanceError(f"data set {dataset.name!r} does not have instance "
                            f"{instance.name!r}'s block x shard graph")
    for name, allocation in allocations.items():
        try:
            allocation.check(instance)
        except InstanceError as error:
            raise InstanceError(f"allocation {name!r}: {error}") from None
    plans = {name: (a.block_machine.tolist(), a.shard_machine.tolist())
             for name, a in allocations.items()}
    world = instance.num_machines
    with tempfile.TemporaryDirectory(prefix="ps_real_") as scratch:
        out_path = Path(scratch) / "results.pt"
        address = f"tcp://127.0.0.1:{free_port()}"
        try:
            mp.start_processes(_rank_main, args=(world, address, dataset, plans, config,
                                                 str(out_path)),
                               nprocs=world, join=True, start_method="spawn")
        except mp.ProcessRaisedException as error:
            raise RuntimeError(f"real PS run failed in a worker process: {error}") from None
        except mp.ProcessExitedException as error:
            raise RuntimeError(f"real PS run: a worker process died: {error}") from None
        raw = torch.load(out_path, weights_only=False)
    return {name: RealResult(**values) for name, values in raw.items()}


@dataclass
class _Layout:
    """Where every feature lives for one allocation, from one rank's point of view."""

    server_features: np.ndarray            # global feature ids this rank serves, in order
    send_rows: dict[int, torch.Tensor]     # peer -> rows of the server matrix it pulls
    recv_counts: dict[int, int]            # owner -> rows this rank pulls from it
    local_rows: torch.Tensor               # server rows of own shards this worker uses
    worker_matrix: torch.Tensor            # CSR: my samples x my worker-local columns
    worker_matrix_t: torch.Tensor          # its transpose (CSR)
    labels: torch.Tensor
    nnz: int


def _shard_features(dataset: SparseDataset, shards: np.ndarray) -> np.ndarray:
    offsets = dataset.shard_offsets
    if shards.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(offsets[s], offsets[s + 1]) for s in shards])


def _layout(dataset: SparseDataset, block_machine: np.ndarray, shard_machine: np.ndarray,
            rank: int, world: int) -> _Layout:
    csr = dataset.features
    block_rows = dataset.block_rows
    column_shard = np.searchsorted(dataset.shard_offsets, np.arange(csr.shape[1]),
                                   side="right") - 1
    needed = []
    rows_of = []
    for machine in range(world):
        rows = np.concatenate([np.arange(block_rows[b], block_rows[b + 1])
                               for b in np.flatnonzero(block_machine == machine)] or
                              [np.zeros(0, dtype=np.int64)])
        rows_of.append(rows)
        columns = csr[rows].indices if rows.size else np.zeros(0, dtype=np.int64)
        needed.append(np.unique(column_shard[columns]))
    owned = np.flatnonzero(shard_machine == rank)
    server_features = _shard_features(dataset, owned)
    server_row = {int(f): i for i, f in enumerate(server_features)}
    send_rows = {}
    for peer in range(world):
        if peer == rank:
            continue
        shards = needed[peer][shard_machine[needed[peer]] == rank]
        if shards.size:
            send_rows[peer] = torch.tensor([server_row[int(f)] for f in
                                            _shard_features(dataset, shards)], dtype=torch.long)
    mine = needed[rank]
    local_shards = mine[shard_machine[mine] == rank]
    local_features = _shard_features(dataset, local_shards)
    recv_counts, worker_features = {}, [local_features]
    for owner in range(world):
        if owner == rank:
            continue
        shards = mine[shard_machine[mine] == owner]
        if shards.size:
            features = _shard_features(dataset, shards)
            recv_counts[owner] = int(features.size)
            worker_features.append(features)
    worker_order = np.concatenate(worker_features)
    worker_column = np.full(csr.shape[1], -1, dtype=np.int64)
    worker_column[worker_order] = np.arange(worker_order.size)
    sub = csr[rows_of[rank]].tocoo()
    indices = torch.tensor(np.stack([sub.row, worker_column[sub.col]]), dtype=torch.long)
    values = torch.ones(sub.nnz, dtype=torch.float32)
    shape = (rows_of[rank].size, worker_order.size)
    matrix = torch.sparse_coo_tensor(indices, values, shape).coalesce()
    return _Layout(
        server_features=server_features, send_rows=send_rows, recv_counts=recv_counts,
        local_rows=torch.tensor([server_row[int(f)] for f in local_features], dtype=torch.long),
        worker_matrix=matrix.to_sparse_csr(), worker_matrix_t=matrix.t().coalesce().to_sparse_csr(),
        labels=torch.tensor(dataset.labels[rows_of[rank]], dtype=torch.long), nnz=int(sub.nnz))


class _Link:
    """Counts payload bytes and paces a phase to the emulated bandwidth."""

    def __init__(self, bandwidth_bytes_per_s: float | None) -> None:
        self.bandwidth = bandwidth_bytes_per_s
        self.sent = 0
        self.received = 0

    def exchange(self, sends: dict[int, torch.Tensor], receives: dict[int, torch.Tensor]) -> None:
        started = time.perf_counter()
        requests = [dist.irecv(buffer, src=peer) for peer, buffer in receives.items()]
        requests += [dist.isend(tensor, dst=peer) for peer, tensor in sends.items()]
        for request in requests:
            request.wait()
        phase = sum(t.numel() * t.element_size() for t in sends.values())
        incoming = sum(t.numel() * t.element_size() for t in receives.values())
        self.sent += phase
        self.received += incoming
        if self.bandwidth:
            remaining = (phase + incoming) / self.bandwidth - (time.perf_counter() - started)
            if remaining > 0:
                time.sleep(remaining)


def _rank_main(rank: int, world: int, address: str, dataset: SparseDataset,
               plans: dict[str, tuple[list[int], list[int]]], config: RealRunConfig,
               out_path: str) -> None:
    warnings.filterwarnings("ignore", message="Sparse", category=UserWarning)
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world,
                            timeout=timedelta(seconds=config.timeout_s))
    try:
        total_samples = float(dataset.features.shape[0])
        trainers = {name: _Trainer(_layout(dataset, np.array(blocks), np.array(shards), rank,
                                           world), dataset.num_classes, total_samples, config)
                    for name, (blocks, shards) in plans.items()}
        for trainer in trainers.values():
            trainer.run(config.warmup_iterations, timed=False)
        for _ in range(config.rounds):  # interleaved, so load drift hits every allocation alike
            for trainer in trainers.values():
                trainer.run(config.iterations, timed=True)
        results = {name: trainer.summary() for name, trainer in trainers.items()}
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, results)
        if rank == 0:
            torch.save({name: _merge([g[name] for g in gathered], total_samples)
                        for name in plans}, out_path)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _merge(per_rank: list[dict[str, Any]], total_samples: float) -> dict[str, Any]:
    rounds = np.array([r["round_s"] for r in per_rank])          # ranks x rounds
    iteration = np.median(rounds, axis=1)
    losses = np.sum([r["losses"] for r in per_rank], axis=0) / total_samples
    return {
        "iteration_s": float(np.median(rounds.max(axis=0))),
        "iteration_s_per_rank": iteration.tolist(),
        "compute_s_per_rank": [r["compute_s"] for r in per_rank],
        "sent_bytes_per_rank": [r["sent"] for r in per_rank],
        "received_bytes_per_rank": [r["received"] for r in per_rank],
        "remote_bytes": int(sum(r["sent"] for r in per_rank)),
        "nnz_per_rank": [r["nnz"] for r in per_rank],
        "losses": [float(v) for v in losses],
    }


class _Trainer:
    """One allocation's server shards and worker data on this rank, trained in rounds."""

    def __init__(self, layout: _Layout, num_classes: int, total_samples: float,
                 config: RealRunConfig) -> None:
        self.layout, self.num_classes, self.total_samples = layout, num_classes, total_samples
        self.config = config
        self.server = torch.zeros(layout.server_features.size, num_classes)
        self.link = _Link(config.bandwidth_bytes_per_s)
        self.losses: list[float] = []
        self.round_s: list[float] = []
        self.compute_s = 0.0
        self.timed_iterations = 0
        self.sent = self.received = 0

    def run(self, iterations: int, timed: bool) -> None:
        dist.barrier()
        self.link.sent = self.link.received = 0
        compute_s = 0.0
        started = time.perf_counter()
        for _ in range(iterations):
            compute_s += self.step()
        elapsed = time.perf_counter() - started
        if timed:
            self.round_s.append(elapsed / iterations)
            self.compute_s += compute_s
            self.timed_iterations += iterations
            self.sent += self.link.sent
            self.received += self.link.received

    def step(self) -> float:
        layout, classes = self.layout, self.num_classes
        received = {owner: torch.empty(count, classes)
                    for owner, count in layout.recv_counts.items()}
        self.link.exchange({peer: self.server[rows] for peer, rows in layout.send_rows.items()},
                           received)
        begin = time.perf_counter()
        weights = torch.cat([self.server[layout.local_rows], *received.values()])
        loss, gradient = _softmax_gradient(layout, weights, self.total_samples)
        compute_s = time.perf_counter() - begin
        self.losses.append(float(loss))
        pushes, offset = {}, layout.local_rows.numel()
        for owner, count in layout.recv_counts.items():
            pushes[owner] = gradient[offset:offset + count].contiguous()
            offset += count
        incoming = {peer: torch.empty(rows.numel(), classes)
                    for peer, rows in layout.send_rows.items()}
        self.link.exchange(pushes, incoming)
        update = torch.zeros_like(self.server)
        update.index_add_(0, layout.local_rows, gradient[:layout.local_rows.numel()])
        for peer, rows in layout.send_rows.items():
            update.index_add_(0, rows, incoming[peer])
        self.server -= self.config.learning_rate * update
        return compute_s

    def summary(self) -> dict[str, Any]:
        count = max(self.timed_iterations, 1)
        return {"round_s": self.round_s, "compute_s": self.compute_s / count,
                "sent": self.sent // count, "received": self.received // count,
                "nnz": self.layout.nnz, "losses": self.losses}


def _softmax_gradient(layout: _Layout, weights: torch.Tensor,
                      total_samples: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of the worker's samples and its gradient over ``total_samples``."""
    if layout.labels.numel() == 0:
        return torch.zeros(()), torch.zeros_like(weights)
    logits = torch.sparse.mm(layout.worker_matrix, weights)
    log_probs = torch.log_softmax(logits, dim=1)
    loss = -log_probs.gather(1, layout.labels[:, None]).sum()
    residual = log_probs.exp()
    residual[torch.arange(residual.shape[0]), layout.labels] -= 1.0
    return loss, torch.sparse.mm(layout.worker_matrix_t, residual) / total_samples
