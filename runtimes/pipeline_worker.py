"""One device of the real 1F1B pipeline, run by :mod:`runtimes.launch` inside the device's
network namespace and CPU cgroup.

The process owns its stage's segments of the torchvision model (the segments the training
profile measures, :func:`build_segments`) and trains on synthetic data with SGD:

- **1F1B**: the op order of its stage is :func:`one_f_one_b_order`, as in the simulator.
- **Data parallel inside a stage**: each micro-batch of ``B`` samples is split by speed (the
  ``ranges``); a sender ships exactly the rows each receiver needs (``isend``/``irecv`` of
  the overlapping sample ranges). After its last backward a stage sums its gradients with
  one ``all_reduce`` over the stage's process group.
- Loss: cross-entropy summed over the micro-batch / (B * M), so the members' summed
  gradients are the full-batch gradient. The SGD step (momentum 0.9) follows the all-reduce.

Nothing waits on purpose: a device's speed is its CPU quota, a link is ``tc tbf`` on its
veth, and the bytes are eth0's counters over each iteration (:class:`runtimes.counters.Window`:
between two barriers, less the closing barrier's own bytes, measured on the same link).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from time import monotonic
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from envs.hetero_pipeline.profile_training import build_segments
from envs.hetero_pipeline.simulator import one_f_one_b_order
from runtimes.cgroup import join_assigned_group
from runtimes.counters import Window, barrier_bytes

Range = tuple[int, int]


def overlaps(mine: Range, theirs: list[Range]) -> Iterator[tuple[int, int, int]]:
    """``(member, lo, hi)`` for every member of the other stage whose rows meet ``mine``."""
    for index, (lo, hi) in enumerate(theirs):
        a, b = max(mine[0], lo), min(mine[1], hi)
        if a < b:
            yield index, a, b


class StageProcess:
    """This rank's module, data and peers; ``iteration()`` runs one 1F1B training step."""

    def __init__(self, spec: dict[str, Any], rank: int) -> None:
        self.spec, self.rank = spec, rank
        self.stages: list[list[int]] = spec["stage_ranks"]
        self.stage = next(s for s, ranks in enumerate(self.stages) if rank in ranks)
        self.ranges: list[list[Range]] = spec["ranges"]
        self.mine = self.ranges[self.stage][self.stages[self.stage].index(rank)]
        segments = build_segments(spec["model_name"])
        start, stop = spec["layer_ranges"][self.stage]
        self.module = nn.Sequential(*(m for _, m in segments[start:stop])).train()
        size = spec["image_size"]
        with torch.no_grad():  # per-sample shapes of every boundary
            probe, shapes = torch.zeros(1, 3, size, size), []
            for _, segment in segments:
                probe = segment.eval()(probe)
                shapes.append(tuple(probe.shape[1:]))
        self.module.train()
        self.in_shape = shapes[start - 1] if start > 0 else (3, size, size)
        self.out_shape = shapes[stop - 1]
        micro, batch = spec["num_microbatches"], spec["micro_batch_size"]
        generator = torch.Generator().manual_seed(1234)
        self.images = torch.randn(micro, batch, 3, size, size, generator=generator)
        self.labels = torch.randint(0, 10, (micro, batch), generator=generator)
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=0.01, momentum=0.9)
        self.order = one_f_one_b_order(self.stage, len(self.stages), micro)
        self.op_s: dict[str, list[float]] = {"F": [], "B": []}

    def _send(self, rows: torch.Tensor, peer_stage: int, pending: list) -> None:
        for index, a, b in overlaps(self.mine, self.ranges[peer_stage]):
            piece = rows[a - self.mine[0]:b - self.mine[0]].contiguous()
            pending.append((dist.isend(piece, self.stages[peer_stage][index]), piece))

    def _receive(self, peer_stage: int, shape: tuple[int, ...]) -> torch.Tensor:
        buffer = torch.empty((self.mine[1] - self.mine[0],) + shape)
        works = [dist.irecv(buffer[a - self.mine[0]:b - self.mine[0]],
                            self.stages[peer_stage][index])
                 for index, a, b in overlaps(self.mine, self.ranges[peer_stage])]
        for work in works:
            work.wait()
        return buffer

    def _timed(self, kind: str, fn: Any) -> Any:
        start = monotonic()
        value = fn()
        self.op_s[kind].append(monotonic() - start)
        return value

    def iteration(self, group: Any) -> float:
        """One training iteration; returns its summed loss contribution."""
        s, last = self.stage, len(self.stages) - 1
        micro, batch = self.spec["num_microbatches"], self.spec["micro_batch_size"]
        lo, hi = self.mine
        pending: list = []
        stash: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        for kind, m in self.order:
            if kind == "F":
                x = self.images[m, lo:hi] if s == 0 else \
                    self._receive(s - 1, self.in_shape).requires_grad_(True)
                if s == last:
                    out = self._timed("F", lambda x=x, m=m: nn.functional.cross_entropy(
                        self.module(x), self.labels[m, lo:hi], reduction="sum") / (batch * micro))
                    loss += float(out.detach())
                else:
                    out = self._timed("F", lambda x=x: self.module(x))
                    self._send(out.detach(), s + 1, pending)
                stash[m] = (x, out)
                continue
            x, out = stash.pop(m)
            if s == last:
                self._timed("B", lambda out=out: out.backward())
            else:
                grad = self._receive(s + 1, self.out_shape)
                self._timed("B", lambda out=out, grad=grad: out.backward(grad))
            if s > 0:
                self._send(x.grad, s - 1, pending)
        if group is not None:
            flat = torch.cat([p.grad.reshape(-1) for p in self.module.parameters()])
            dist.all_reduce(flat, group=group)
            offset = 0
            for p in self.module.parameters():
                p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
        self.optimizer.step()
        for work, _ in pending:
            work.wait()
        return loss


def worker_main(spec: dict[str, Any], rank: int) -> dict[str, Any]:
    """Run ``spec["iterations"]`` iterations; this rank's times, counters and op times."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=spec["master"], rank=rank,
                            world_size=spec["world"],
                            timeout=timedelta(seconds=spec["timeout_s"]))
    try:
        groups = [dist.new_group(ranks) if len(ranks) > 1 else None
                  for ranks in spec["stage_ranks"]]
        process = StageProcess(spec, rank)
        join_assigned_group(rank)
        window = Window(barrier_bytes())
        rows = []
        for _ in range(spec["iterations"]):
            dist.barrier()
            window.open()
            start = monotonic()
            loss = process.iteration(groups[process.stage])
            end = monotonic()
            rows.append((start, end, loss, *window.close()))
        dist.barrier()
        per_iteration = {kind: len(times) // spec["iterations"]
                         for kind, times in process.op_s.items()}
        return {"rows": rows, "stage": process.stage,
                # median op time after the first (warm-up) iteration, as run (throttled)
                "forward_op_s": float(np.median(process.op_s["F"][per_iteration["F"]:]
                                                or process.op_s["F"])),
                "backward_op_s": float(np.median(process.op_s["B"][per_iteration["B"]:]
                                                 or process.op_s["B"]))}
    finally:
        dist.destroy_process_group()
