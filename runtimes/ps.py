"""A real parameter server: one process per machine, each in its own network namespace.

``python -m runtimes.ps --dataset PATH [--machines M] [--planner NAME ...] [--allocation
FILE ...] [--link-mbps R ...] [--cpus C] [--duplex] [--iterations N] [--rounds K]
[--warmup W] [--json OUT]``

Every machine of the instance is a process running :mod:`runtimes.ps_worker` (worker +
server, torch.distributed over gloo) inside its namespace of a :class:`runtimes.netns.Fabric`
with a **shared** link: both directions of machine ``m`` pass one ``tbf`` token bucket of
``bandwidth_bytes_per_s[m]`` (a line rate: frames with their headers), which is the
simulator's link (all of a machine's bytes through its link); ``--duplex`` gives each
direction its own bucket instead (full-duplex Ethernet, which the simulator does not model).
Machine ``m`` runs under a CPU quota of ``cpus * speed[m] / max(speed)`` CPUs. All
allocations run in one set of processes, in interleaved rounds (so load drift hits them
alike); per allocation the result is the median over rounds of the slowest machine's mean
iteration time and the interfaces' byte counters per iteration. ``python -m runtimes.ps
worker SPEC RANK OUT`` is the per-machine entry the launcher starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs.param_server.dataset import SparseDataset
from envs.param_server.generator import MachineProfile
from envs.param_server.instance import Allocation, InstanceError, ParamServerInstance
from runtimes.cgroup import CpuQuotas
from runtimes.launch import RunFailed, interrupt_on_sigterm, run_nodes, worker_entry
from runtimes.netns import Fabric, KernelRefused, LinkSpec


@dataclass(frozen=True)
class RunConfig:
    iterations: int = 5
    rounds: int = 3
    warmup_iterations: int = 2
    cpus: float = 0.5
    duplex: bool = False          # True: one token bucket per direction (full-duplex links)
    learning_rate: float = 2.0
    timeout_s: float = 300.0


@dataclass
class RealResult:
    """Measured for one allocation. ``iteration_s``: median over rounds of the slowest
    machine's mean iteration; bytes per iteration from each machine's eth0 counters;
    ``wire_bytes`` = sum of tx over machines (every frame once); ``losses`` per iteration."""

    iteration_s: float
    round_s: list[float]
    compute_s_per_rank: list[float]
    tx_bytes_per_rank: list[float]
    rx_bytes_per_rank: list[float]
    wire_bytes: float
    nnz_per_rank: list[int]
    losses: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quotas(instance: ParamServerInstance, cpus: float) -> list[float]:
    return [cpus * float(v) / float(instance.speed_nnz_per_s.max())
            for v in instance.speed_nnz_per_s]


def run_allocations(dataset: SparseDataset, instance: ParamServerInstance,
                    allocations: dict[str, Allocation],
                    config: RunConfig = RunConfig()) -> dict[str, RealResult]:
    """Train under every allocation with one process per machine; measured results.

    Raises :class:`KernelRefused` (one line) when namespaces or cgroups cannot be made."""
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
    links = [LinkSpec(float(b) * 8 / 1e6) for b in instance.bandwidth_bytes_per_s]
    spec = {"dataset": dataset, "plans": plans, "config": config}
    with interrupt_on_sigterm(), Fabric("ps", links, shared=not config.duplex) as fabric, \
            CpuQuotas("ps", quotas(instance, config.cpus)) as limits:
        per_rank = run_nodes("runtimes.ps", spec, fabric, limits, config.timeout_s)
    total = float(dataset.features.shape[0])
    return {name: _merge([r[name] for r in per_rank], total, config.iterations)
            for name in plans}


def _merge(per_rank: list[dict[str, Any]], total_samples: float, iterations: int) -> RealResult:
    rounds = np.array([r["round_s"] for r in per_rank])          # ranks x rounds
    tx = [float(np.median(r["tx_bytes"])) / iterations for r in per_rank]
    rx = [float(np.median(r["rx_bytes"])) / iterations for r in per_rank]
    return RealResult(
        iteration_s=float(np.median(rounds.max(axis=0))), round_s=rounds.max(axis=0).tolist(),
        compute_s_per_rank=[float(np.median(r["compute_s"])) for r in per_rank],
        tx_bytes_per_rank=tx, rx_bytes_per_rank=rx, wire_bytes=float(sum(tx)),
        nnz_per_rank=[r["nnz"] for r in per_rank],
        losses=[float(v) for v in np.sum([r["losses"] for r in per_rank], axis=0)
                / total_samples])


def _allocation_file(path: str, instance: ParamServerInstance) -> Allocation:
    try:
        data = json.loads(Path(path).read_text())
        allocation = Allocation(np.array(data["block_machine"]), np.array(data["shard_machine"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InstanceError(f"{path}: not an allocation JSON with 'block_machine' and "
                            f"'shard_machine' ({error!r})") from None
    allocation.check(instance)
    return allocation


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        from runtimes.ps_worker import worker_main

        worker_entry(argv, worker_main)
        return
    from heuristics.param_server import HEURISTICS

    parser = argparse.ArgumentParser(prog="python -m runtimes.ps", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--dataset", required=True, help="sparse data set (.npz, SparseDataset)")
    parser.add_argument("--machines", type=int, default=4)
    parser.add_argument("--planner", action="append", choices=sorted(HEURISTICS),
                        help="allocation by a heuristic (repeatable)")
    parser.add_argument("--allocation", action="append", default=[],
                        help="allocation JSON {block_machine, shard_machine} (repeatable)")
    parser.add_argument("--link-mbps", type=float, nargs="+", default=[4.0],
                        help="line rate of each machine's link (one value: all machines)")
    parser.add_argument("--cpus", type=float, default=RunConfig.cpus,
                        help="CPU quota of each machine (equal speeds)")
    parser.add_argument("--duplex", action="store_true",
                        help="one token bucket per direction instead of one for both")
    parser.add_argument("--iterations", type=int, default=RunConfig.iterations)
    parser.add_argument("--rounds", type=int, default=RunConfig.rounds)
    parser.add_argument("--warmup", type=int, default=RunConfig.warmup_iterations)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    try:
        rates = args.link_mbps * args.machines if len(args.link_mbps) == 1 else args.link_mbps
        if len(rates) != args.machines or min(rates) <= 0:
            raise InstanceError(f"--link-mbps: need 1 or {args.machines} positive rates, got "
                                f"{args.link_mbps}")
        dataset = SparseDataset.load(args.dataset)
        instance = dataset.to_instance(args.machines, MachineProfile(), np.random.default_rng(0))
        instance = instance.with_machines(instance.speed_nnz_per_s,
                                          np.array(rates) * 1e6 / 8, instance.memory_bytes)
        allocations = {name: HEURISTICS[name](instance) for name in args.planner or []}
        allocations.update({Path(p).stem: _allocation_file(p, instance)
                            for p in args.allocation})
        if not allocations:
            raise InstanceError("give at least one --planner or --allocation")
        results = run_allocations(dataset, instance, allocations,
                                  RunConfig(args.iterations, args.rounds, args.warmup, args.cpus,
                                            args.duplex))
    except (InstanceError, KernelRefused, RunFailed, ValueError) as error:
        sys.exit(f"runtimes.ps: {error}")
    except KeyboardInterrupt:
        sys.exit("runtimes.ps: interrupted (namespaces and cgroups removed)")
    for name, result in results.items():
        print(f"{name}: {result.iteration_s * 1e3:.1f} ms/iteration, "
              f"{result.wire_bytes / 1e3:.1f} kB on the wire per iteration, loss "
              f"{result.losses[0]:.3f} -> {result.losses[-1]:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({n: r.to_dict() for n, r in results.items()}))


if __name__ == "__main__":
    main()
