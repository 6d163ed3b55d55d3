"""One machine of the real parameter server: a worker (its data blocks) and a server (its
parameter shards), run by :mod:`runtimes.launch` inside the machine's network namespace.

The model is softmax regression on the data set's sparse features (a ``features x classes``
float32 weight matrix laid out shard after shard). Per iteration (bulk-synchronous):

1. pull: every server sends each peer the shards that the peer's blocks touch, whole, in one
   message per peer (``isend``/``irecv``); a machine reads its own shards locally;
2. compute: softmax-regression gradient on the worker's samples (``torch.sparse`` CSR);
3. push: the gradient rows of every remote shard go back to their owner, one message per peer;
4. update: each server applies SGD to its shards with the gradients of all workers.

Nothing waits on purpose: the link is the kernel's (``tc tbf`` on the namespace's veth) and
the bytes are the interface's counters over each timed round (:class:`runtimes.counters.Window`:
between two barriers, less the closing barrier's own bytes, measured on the same link).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import timedelta
from time import perf_counter
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from envs.param_server.dataset import SparseDataset
from runtimes.cgroup import join_assigned_group
from runtimes.counters import Window, barrier_bytes


@dataclass
class Layout:
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


def build_layout(dataset: SparseDataset, block_machine: np.ndarray, shard_machine: np.ndarray,
                 rank: int, world: int) -> Layout:
    csr = dataset.features
    block_rows = dataset.block_rows
    column_shard = np.searchsorted(dataset.shard_offsets, np.arange(csr.shape[1]),
                                   side="right") - 1
    needed, rows_of = [], []
    for machine in range(world):
        rows = np.concatenate([np.arange(block_rows[b], block_rows[b + 1])
                               for b in np.flatnonzero(block_machine == machine)] or
                              [np.zeros(0, dtype=np.int64)])
        rows_of.append(rows)
        columns = csr[rows].indices if rows.size else np.zeros(0, dtype=np.int64)
        needed.append(np.unique(column_shard[columns]))
    server_features = _shard_features(dataset, np.flatnonzero(shard_machine == rank))
    server_row = {int(f): i for i, f in enumerate(server_features)}
    send_rows = {}
    for peer in range(world):
        shards = needed[peer][shard_machine[needed[peer]] == rank]
        if peer != rank and shards.size:
            send_rows[peer] = torch.tensor([server_row[int(f)] for f in
                                            _shard_features(dataset, shards)], dtype=torch.long)
    mine = needed[rank]
    local_features = _shard_features(dataset, mine[shard_machine[mine] == rank])
    recv_counts, worker_features = {}, [local_features]
    for owner in range(world):
        shards = mine[shard_machine[mine] == owner]
        if owner != rank and shards.size:
            features = _shard_features(dataset, shards)
            recv_counts[owner] = int(features.size)
            worker_features.append(features)
    worker_order = np.concatenate(worker_features)
    worker_column = np.full(csr.shape[1], -1, dtype=np.int64)
    worker_column[worker_order] = np.arange(worker_order.size)
    sub = csr[rows_of[rank]].tocoo()
    indices = torch.tensor(np.stack([sub.row, worker_column[sub.col]]), dtype=torch.long)
    values = torch.ones(sub.nnz, dtype=torch.float32)
    matrix = torch.sparse_coo_tensor(indices, values,
                                     (rows_of[rank].size, worker_order.size)).coalesce()
    return Layout(
        server_features=server_features, send_rows=send_rows, recv_counts=recv_counts,
        local_rows=torch.tensor([server_row[int(f)] for f in local_features], dtype=torch.long),
        worker_matrix=matrix.to_sparse_csr(), worker_matrix_t=matrix.t().coalesce().to_sparse_csr(),
        labels=torch.tensor(dataset.labels[rows_of[rank]], dtype=torch.long), nnz=int(sub.nnz))


def _exchange(sends: dict[int, torch.Tensor], receives: dict[int, torch.Tensor]) -> None:
    requests = [dist.irecv(buffer, src=peer) for peer, buffer in receives.items()]
    requests += [dist.isend(tensor, dst=peer) for peer, tensor in sends.items()]
    for request in requests:
        request.wait()


def softmax_gradient(layout: Layout, weights: torch.Tensor,
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


class Trainer:
    """One allocation's server shards and worker data on this rank, trained in rounds."""

    def __init__(self, layout: Layout, num_classes: int, total_samples: float,
                 learning_rate: float, window: Window) -> None:
        self.layout, self.num_classes, self.total_samples = layout, num_classes, total_samples
        self.learning_rate, self.window = learning_rate, window
        self.server = torch.zeros(layout.server_features.size, num_classes)
        self.losses: list[float] = []
        self.round_s: list[float] = []
        self.compute_s: list[float] = []
        self.tx_bytes: list[int] = []
        self.rx_bytes: list[int] = []

    def run(self, iterations: int, timed: bool) -> None:
        dist.barrier()
        self.window.open()
        started = perf_counter()
        compute_s = sum(self.step() for _ in range(iterations))
        elapsed = perf_counter() - started
        tx, rx = self.window.close()
        if timed:
            self.round_s.append(elapsed / iterations)
            self.compute_s.append(compute_s / iterations)
            self.tx_bytes.append(tx)
            self.rx_bytes.append(rx)

    def step(self) -> float:
        layout, classes = self.layout, self.num_classes
        received = {owner: torch.empty(count, classes)
                    for owner, count in layout.recv_counts.items()}
        _exchange({peer: self.server[rows] for peer, rows in layout.send_rows.items()}, received)
        begin = perf_counter()
        weights = torch.cat([self.server[layout.local_rows], *received.values()])
        loss, gradient = softmax_gradient(layout, weights, self.total_samples)
        compute_s = perf_counter() - begin
        self.losses.append(float(loss))
        pushes, offset = {}, layout.local_rows.numel()
        for owner, count in layout.recv_counts.items():
            pushes[owner] = gradient[offset:offset + count].contiguous()
            offset += count
        incoming = {peer: torch.empty(rows.numel(), classes)
                    for peer, rows in layout.send_rows.items()}
        _exchange(pushes, incoming)
        update = torch.zeros_like(self.server)
        update.index_add_(0, layout.local_rows, gradient[:layout.local_rows.numel()])
        for peer, rows in layout.send_rows.items():
            update.index_add_(0, rows, incoming[peer])
        self.server -= self.learning_rate * update
        return compute_s

    def summary(self) -> dict[str, Any]:
        return {"round_s": self.round_s, "compute_s": self.compute_s, "tx_bytes": self.tx_bytes,
                "rx_bytes": self.rx_bytes, "nnz": self.layout.nnz, "losses": self.losses}


def worker_main(spec: dict[str, Any], rank: int) -> dict[str, Any]:
    """Train every allocation of ``spec`` in interleaved rounds; this rank's measurements."""
    warnings.filterwarnings("ignore", message="Sparse", category=UserWarning)
    torch.set_num_threads(1)
    world, config, dataset = spec["world"], spec["config"], spec["dataset"]
    dist.init_process_group("gloo", init_method=spec["master"], rank=rank, world_size=world,
                            timeout=timedelta(seconds=config.timeout_s))
    try:
        total_samples = float(dataset.features.shape[0])
        join_assigned_group(rank)
        window = Window(barrier_bytes())
        trainers = {name: Trainer(build_layout(dataset, np.array(blocks), np.array(shards),
                                               rank, world),
                                  dataset.num_classes, total_samples, config.learning_rate,
                                  window)
                    for name, (blocks, shards) in spec["plans"].items()}
        for trainer in trainers.values():
            trainer.run(config.warmup_iterations, timed=False)
        for _ in range(config.rounds):  # interleaved, so load drift hits every allocation alike
            for trainer in trainers.values():
                trainer.run(config.iterations, timed=True)
        dist.barrier()
        return {name: trainer.summary() for name, trainer in trainers.items()}
    finally:
        dist.destroy_process_group()
