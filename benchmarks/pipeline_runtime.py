"""A real 1F1B training pipeline: one torch process per device over torch.distributed (gloo).

``run_pipeline(instance, plan, ...)`` starts one process per device used by ``plan`` on
127.0.0.1. Each process owns its stage's segments of the torchvision model (the same
segments the training profile measured, :func:`build_segments`), trains on synthetic data
with SGD, and follows the schedule of :mod:`envs.hetero_pipeline.simulator`:

- **1F1B**: the op order of every stage is :func:`one_f_one_b_order`.
- **Data parallel inside a stage**: a micro-batch of ``B`` samples is split in proportion to
  speed (integer counts by largest remainder, at least one sample each). Between stages each
  sender ships exactly the rows a receiver needs (``isend``/``irecv`` of the overlapping
  sample ranges). After its last backward a stage sums its gradients with ``all_reduce``.
- **Heterogeneity**: every process runs with ``torch.set_num_threads(1)`` (the reference
  speed 1.0 of the profiles is one thread). A device of speed ``v <= 1`` is emulated by the
  slow-down factor ``1/v``: after each forward/backward that took ``t`` seconds of real
  compute, the process sleeps ``t * (1/v - 1)``, so the op occupies ``t / v``.
- **Links**: loopback is far faster than the modelled links, so each transfer carries a
  "ready at" timestamp: the sender's per-direction FIFO channel gives
  ``ready = max(now, channel_free) + X_s`` (``X_s`` from the simulator's formula) and the
  receiver does not use the data before it. An all-reduce lasts at least its modelled
  ``R_s``. Real transfer and all-reduce time count when they are longer.
- Loss: cross-entropy summed over the micro-batch's samples / (B * M), so summed gradients
  of the members equal the full-batch gradient. The optimizer step (SGD, momentum 0.9) runs
  after the all-reduce; it is not in the model (a few ms).

The iteration time is ``max(end) - min(start)`` over all processes after a barrier.
"""

from __future__ import annotations

import math
import os
import queue
import time
import traceback
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from envs.hetero_pipeline.instance import InstanceError, PipelineInstance, PipelinePlan
from envs.hetero_pipeline.profile_training import build_segments
from envs.hetero_pipeline.simulator import one_f_one_b_order, plan_costs


class PipelineRuntimeError(RuntimeError):
    """A pipeline process failed or timed out; the message names the rank."""


@dataclass(frozen=True)
class WorkerSpec:
    rank: int
    world_size: int
    port: int
    model_name: str
    stage: int
    member: int
    stages: tuple[tuple[int, ...], ...]          # ranks per stage
    ranges: tuple[tuple[tuple[int, int], ...], ...]  # sample range per member per stage
    layer_ranges: tuple[tuple[int, int], ...]
    speed: float
    transfer_s: tuple[float, ...]
    allreduce_s: float
    num_microbatches: int
    micro_batch_size: int
    image_size: int
    iterations: int
    timeout_s: float


def split_samples(batch: int, speeds: list[float]) -> list[tuple[int, int]]:
    """Contiguous sample ranges proportional to speed (largest remainder, >= 1 each)."""
    if batch < len(speeds):
        raise InstanceError(f"micro-batch of {batch} samples cannot be split among "
                            f"{len(speeds)} devices")
    exact = np.array(speeds) / sum(speeds) * batch
    counts = np.maximum(np.floor(exact).astype(int), 1)
    while counts.sum() > batch:
        counts[np.argmax(counts - exact)] -= 1
    while counts.sum() < batch:
        counts[np.argmax(exact - counts)] += 1
    edges = np.concatenate([[0], np.cumsum(counts)])
    return [(int(edges[i]), int(edges[i + 1])) for i in range(len(speeds))]


def _overlaps(mine: tuple[int, int], theirs: tuple[tuple[int, int], ...]):
    for index, (lo, hi) in enumerate(theirs):
        a, b = max(mine[0], lo), min(mine[1], hi)
        if a < b:
            yield index, a, b


def _worker(spec: WorkerSpec, results: mp.Queue) -> None:
    try:
        results.put(("ok", spec.rank, _run_worker(spec)))
    except Exception:
        results.put(("error", spec.rank, traceback.format_exc()))


def _run_worker(spec: WorkerSpec) -> dict:
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{spec.port}",
                            rank=spec.rank, world_size=spec.world_size,
                            timeout=__import__("datetime").timedelta(seconds=spec.timeout_s))
    groups = [dist.new_group(list(ranks)) if len(ranks) > 1 else None for ranks in spec.stages]
    S, M, B = len(spec.stages), spec.num_microbatches, spec.micro_batch_size
    s = spec.stage
    segments = build_segments(spec.model_name)
    start_layer, stop_layer = spec.layer_ranges[s]
    module = nn.Sequential(*(m for _, m in segments[start_layer:stop_layer])).train()
    with torch.no_grad():  # per-sample shapes of every boundary
        probe = torch.zeros(1, 3, spec.image_size, spec.image_size)
        shapes = []
        for _, segment in segments:
            probe = segment.eval()(probe)
            shapes.append(tuple(probe.shape[1:]))
        module.train()
    in_shape = shapes[start_layer - 1] if s > 0 else (3, spec.image_size, spec.image_size)
    mine = spec.ranges[s][spec.member]
    my_count = mine[1] - mine[0]
    generator = torch.Generator().manual_seed(1234)
    images = torch.randn(M, B, 3, spec.image_size, spec.image_size, generator=generator)
    labels = torch.randint(0, 10, (M, B), generator=generator)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    slowdown = 1.0 / spec.speed - 1.0
    order = one_f_one_b_order(s, S, M)
    compute_s: dict[str, list[float]] = {"F": [], "B": []}
    iteration_rows = []

    def timed(kind, fn):
        start = time.monotonic()
        value = fn()
        elapsed = time.monotonic() - start
        compute_s[kind].append(elapsed)
        if slowdown > 0:
            time.sleep(elapsed * slowdown)
        return value

    def send(tensor_rows, peer_stage, peer_ranges, my_range, channel, boundary, pending):
        now = time.monotonic()
        ready = max(now, channel[0]) + spec.transfer_s[boundary]
        channel[0] = ready
        stamp = torch.tensor([ready], dtype=torch.float64)
        for index, a, b in _overlaps(my_range, peer_ranges):
            rank = spec.stages[peer_stage][index]
            piece = tensor_rows[a - my_range[0]:b - my_range[0]].contiguous()
            pending.append((dist.isend(stamp, rank), stamp))
            pending.append((dist.isend(piece, rank), piece))

    def receive(peer_stage, peer_ranges, shape):
        buffer = torch.empty((my_count,) + tuple(shape))
        works, stamps = [], []
        for index, a, b in _overlaps(mine, peer_ranges):
            rank = spec.stages[peer_stage][index]
            stamp = torch.empty(1, dtype=torch.float64)
            works.append(dist.irecv(stamp, rank))
            works.append(dist.irecv(buffer[a - mine[0]:b - mine[0]], rank))
            stamps.append(stamp)
        for work in works:
            work.wait()
        ready = max(float(t[0]) for t in stamps)
        delay = ready - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return buffer

    for _ in range(spec.iterations):
        dist.barrier()
        iteration_start = time.monotonic()
        forward_channel, backward_channel = [0.0], [0.0]
        pending: list = []
        stash: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        optimizer.zero_grad(set_to_none=True)
        iteration_loss = 0.0
        for kind, m in order:
            if kind == "F":
                if s == 0:
                    x = images[m, mine[0]:mine[1]]
                else:
                    x = receive(s - 1, spec.ranges[s - 1], in_shape).requires_grad_(True)
                if s == S - 1:
                    out = timed("F", lambda x=x, m=m: nn.functional.cross_entropy(
                        module(x), labels[m, mine[0]:mine[1]], reduction="sum") / (B * M))
                    iteration_loss += float(out.detach())
                else:
                    out = timed("F", lambda x=x: module(x))
                    send(out.detach(), s + 1, spec.ranges[s + 1], mine, forward_channel, s,
                         pending)
                stash[m] = (x, out)
            else:
                x, out = stash.pop(m)
                if s == S - 1:
                    timed("B", lambda out=out: out.backward())
                else:
                    grad = receive(s + 1, spec.ranges[s + 1], shapes[stop_layer - 1])
                    timed("B", lambda out=out, grad=grad: out.backward(grad))
                if s > 0:
                    send(x.grad, s - 1, spec.ranges[s - 1], mine, backward_channel, s - 1,
                         pending)
        if groups[s] is not None:
            start = time.monotonic()
            flat = torch.cat([p.grad.reshape(-1) for p in module.parameters()])
            dist.all_reduce(flat, group=groups[s])
            offset = 0
            for p in module.parameters():
                p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
            delay = start + spec.allreduce_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        end = time.monotonic()
        optimizer.step()
        for work, _ in pending:
            work.wait()
        iteration_rows.append((iteration_start, end, iteration_loss))
    rows = torch.tensor(iteration_rows, dtype=torch.float64)
    gathered = [torch.zeros_like(rows) for _ in range(spec.world_size)]
    dist.all_gather(gathered, rows)
    dist.barrier()
    dist.destroy_process_group()
    stacked = torch.stack(gathered)  # (world, iterations, [start, end, loss])
    iteration_s = (stacked[:, :, 1].max(0).values - stacked[:, :, 0].min(0).values).tolist()
    # per op, after the first (warm-up) iteration: real compute seconds before the slow-down
    ops_per_iteration = {kind: len(times) // spec.iterations for kind, times in compute_s.items()}
    return {"iteration_s": iteration_s, "losses": stacked[:, :, 2].sum(0).tolist(),
            "stage": s, "speed": spec.speed,
            "forward_op_s": float(np.median(compute_s["F"][ops_per_iteration["F"]:])),
            "backward_op_s": float(np.median(compute_s["B"][ops_per_iteration["B"]:]))}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_pipeline(instance: PipelineInstance, plan: PipelinePlan, model_name: str,
                 micro_batch_size: int, image_size: int, iterations: int = 4,
                 timeout_s: float = 300.0) -> dict:
    """Run ``plan`` for ``iterations`` real iterations; returns per-iteration seconds etc."""
    costs = plan_costs(instance, plan)
    if any(d.speed > 1.0 for d in instance.devices):
        raise InstanceError("the runtime emulates speeds <= 1.0 (1.0 = one thread); "
                            "rescale device speeds")
    stages = []
    rank = 0
    for stage in plan.stages:
        stages.append(tuple(range(rank, rank + len(stage.devices))))
        rank += len(stage.devices)
    ranges = tuple(tuple(split_samples(micro_batch_size,
                                       [instance.devices[d].speed for d in stage.devices]))
                   for stage in plan.stages)
    port = _free_port()
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = []
    for s, stage in enumerate(plan.stages):
        for member, device in enumerate(stage.devices):
            spec = WorkerSpec(
                rank=stages[s][member], world_size=rank, port=port, model_name=model_name,
                stage=s, member=member, stages=tuple(stages), ranges=ranges,
                layer_ranges=tuple((st.start, st.stop) for st in plan.stages),
                speed=instance.devices[device].speed,
                transfer_s=tuple(float(x) for x in costs.transfer_s[0]),
                allreduce_s=float(costs.allreduce_s[0, s]),
                num_microbatches=instance.num_microbatches, micro_batch_size=micro_batch_size,
                image_size=image_size, iterations=iterations, timeout_s=timeout_s)
            process = context.Process(target=_worker, args=(spec, results), daemon=True)
            process.start()
            processes.append(process)
    outputs: dict[int, dict] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(outputs) < rank:
            try:
                status, who, payload = results.get(timeout=1.0)
            except queue.Empty:
                dead = [r for r, process in enumerate(processes)
                        if r not in outputs and process.exitcode not in (None, 0)]
                if dead:
                    raise PipelineRuntimeError(
                        f"rank(s) {dead} exited with code(s) "
                        f"{[processes[r].exitcode for r in dead]} before reporting") from None
                if time.monotonic() > deadline:
                    raise PipelineRuntimeError(
                        f"pipeline timed out after {timeout_s:.0f} s; ranks "
                        f"{sorted(set(range(rank)) - set(outputs))} did not finish") from None
                continue
            if status == "error":
                raise PipelineRuntimeError(f"rank {who} failed:\n{payload}")
            outputs[who] = payload
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
    if not all(math.isfinite(loss) for loss in outputs[0]["losses"]):
        raise PipelineRuntimeError(f"training diverged: losses {outputs[0]['losses']}")
    return {"iteration_s": outputs[0]["iteration_s"], "losses": outputs[0]["losses"],
            "ranks": [outputs[r] for r in range(rank)], "processes": rank}
