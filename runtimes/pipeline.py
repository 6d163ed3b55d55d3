"""A real heterogeneous 1F1B training pipeline: one process per device, each in its own
network namespace and CPU cgroup.

``python -m runtimes.pipeline --instance FILE --plan FILE --model NAME [--micro-batch-size B]
[--image-size P] [--iterations N] [--timeout-s T] [--json OUT]``

Device ``d`` of the instance becomes a process (:mod:`runtimes.pipeline_worker`, gloo)
running under a CPU quota of ``speed[d]`` CPUs (speed 1.0 = one CPU = the training profile's
one-thread reference) in a namespace of a :class:`runtimes.netns.Fabric` with a **duplex**
link of ``bandwidth_mbps[d]`` each way (the simulator's per-direction links). A non-zero
``latency_s`` needs ``sch_netem`` and is refused where the kernel lacks it. Per iteration the
result holds its time (latest end - earliest start over processes, one clock: one host), loss
and every process's eth0 byte counters. ``python -m runtimes.pipeline worker SPEC RANK OUT``
is the per-device entry the launcher starts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs.hetero_pipeline.instance import InstanceError, PipelineInstance, PipelinePlan
from envs.hetero_pipeline.simulator import plan_costs
from runtimes.cgroup import CpuQuotas
from runtimes.launch import RunFailed, interrupt_on_sigterm, run_nodes, worker_entry
from runtimes.netns import Fabric, KernelRefused, LinkSpec


@dataclass
class PipelineResult:
    """Per iteration: ``iteration_s``, ``losses``, ``wire_bytes`` (sum of tx over processes);
    per process (rank order = stages in order, devices in stage order): ``devices``,
    ``stages``, ``tx_bytes``/``rx_bytes`` per iteration and the median ``forward_op_s`` /
    ``backward_op_s`` as run (after the first iteration)."""

    iteration_s: list[float]
    losses: list[float]
    wire_bytes: list[float]
    devices: list[int]
    stages: list[int]
    tx_bytes: list[list[float]]
    rx_bytes: list[list[float]]
    forward_op_s: list[float]
    backward_op_s: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def run_pipeline(instance: PipelineInstance, plan: PipelinePlan, model_name: str,
                 micro_batch_size: int, image_size: int, iterations: int = 4,
                 timeout_s: float = 300.0) -> PipelineResult:
    """Run ``plan`` for ``iterations`` real iterations on kernel-emulated devices and links.

    Raises :class:`KernelRefused` (one line) when namespaces or cgroups cannot be made."""
    plan_costs(instance, plan)  # validates the plan against the instance
    if iterations < 1:
        raise InstanceError(f"iterations must be >= 1, got {iterations}")
    devices = [d for stage in plan.stages for d in stage.devices]
    stage_ranks, rank = [], 0
    for stage in plan.stages:
        stage_ranks.append(list(range(rank, rank + len(stage.devices))))
        rank += len(stage.devices)
    spec = {
        "model_name": model_name, "stage_ranks": stage_ranks,
        "ranges": [split_samples(micro_batch_size, [instance.devices[d].speed
                                                    for d in stage.devices])
                   for stage in plan.stages],
        "layer_ranges": [(stage.start, stage.stop) for stage in plan.stages],
        "num_microbatches": instance.num_microbatches, "micro_batch_size": micro_batch_size,
        "image_size": image_size, "iterations": iterations, "timeout_s": timeout_s}
    links = [LinkSpec(instance.devices[d].bandwidth_mbps, instance.latency_s * 1e3)
             for d in devices]
    speeds = [instance.devices[d].speed for d in devices]
    with interrupt_on_sigterm(), Fabric("pp", links, shared=False) as fabric, \
            CpuQuotas("pp", speeds) as limits:
        ranks = run_nodes("runtimes.pipeline", spec, fabric, limits, timeout_s)
    rows = np.array([r["rows"] for r in ranks])   # ranks x iterations x (start, end, loss, tx, rx)
    losses = rows[:, :, 2].sum(axis=0).tolist()
    if not all(math.isfinite(loss) for loss in losses):
        raise RunFailed(f"training diverged: losses {losses}")
    return PipelineResult(
        iteration_s=(rows[:, :, 1].max(axis=0) - rows[:, :, 0].min(axis=0)).tolist(),
        losses=losses, wire_bytes=rows[:, :, 3].sum(axis=0).tolist(), devices=devices,
        stages=[r["stage"] for r in ranks], tx_bytes=rows[:, :, 3].tolist(),
        rx_bytes=rows[:, :, 4].tolist(), forward_op_s=[r["forward_op_s"] for r in ranks],
        backward_op_s=[r["backward_op_s"] for r in ranks])


def profile_on_device(model_name: str, micro_batch_size: int, image_size: int,
                      repetitions: int = 5, cpus: float = 1.0) -> dict[str, Any]:
    """The training profile (:mod:`envs.hetero_pipeline.profile_training`) measured in a
    cgroup of ``cpus`` CPUs with the devices' priority: the reference speed 1.0 is then what a
    device of speed 1.0 gets in :func:`run_pipeline` on this machine now."""
    command = [sys.executable, "-m", "envs.hetero_pipeline.profile_training", "--models",
               model_name, "--batch-size", str(micro_batch_size), "--image-size",
               str(image_size), "--repetitions", str(repetitions)]
    with tempfile.TemporaryDirectory(prefix="pipesched_profile_") as out, \
            interrupt_on_sigterm(), CpuQuotas("prof", [cpus]) as limits:
        process = subprocess.Popen([*command, "--out", out], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            limits.move(0, process.pid)
            _, errors = process.communicate()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode != 0:
            raise RunFailed(f"profiling {model_name} failed: "
                            f"{(errors.strip().splitlines() or ['?'])[-1]}")
        return json.loads((Path(out) / f"{model_name}.json").read_text())


def _read(path: str, parse: Any, what: str) -> Any:
    try:
        return parse(Path(path).read_text())
    except OSError as error:
        raise InstanceError(f"{path}: cannot read the {what}: {error.strerror}") from None
    except InstanceError as error:
        raise InstanceError(f"{path}: {error}") from None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        from runtimes.pipeline_worker import worker_main

        worker_entry(argv, worker_main)
        return
    parser = argparse.ArgumentParser(prog="python -m runtimes.pipeline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--instance", required=True, help="PipelineInstance JSON")
    parser.add_argument("--plan", required=True, help="PipelinePlan JSON")
    parser.add_argument("--model", required=True, help="torchvision model of the profile "
                                                       "(resnet18, mobilenet_v2, vgg11)")
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    try:
        instance = _read(args.instance, PipelineInstance.from_json, "instance")
        plan = _read(args.plan, PipelinePlan.from_json, "plan")
        result = run_pipeline(instance, plan, args.model, args.micro_batch_size,
                              args.image_size, args.iterations, args.timeout_s)
    except (InstanceError, KernelRefused, RunFailed, ValueError) as error:
        sys.exit(f"runtimes.pipeline: {error}")
    except KeyboardInterrupt:
        sys.exit("runtimes.pipeline: interrupted (namespaces and cgroups removed)")
    for index, (seconds, loss, wire) in enumerate(zip(result.iteration_s, result.losses,
                                                      result.wire_bytes, strict=True)):
        print(f"iteration {index}: {seconds:.3f} s, loss {loss:.3f}, "
              f"{wire / 1e6:.2f} MB on the wire")
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict()))


if __name__ == "__main__":
    main()
