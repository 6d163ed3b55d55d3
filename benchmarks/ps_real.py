"""``python -m benchmarks.ps_real [--quick] [--out DIR] [--machines M] [--bandwidth-mbps X]
[--sitepackages-bandwidth-mbps Y] [--cpus C]``.

Runs the real parameter server (:mod:`runtimes.ps`: softmax regression over
torch.distributed/gloo, one process per machine, each in its own network namespace with a
kernel token bucket on its link and a CPU quota) under every allocation -- the heuristics,
the trained agent when present, and two random allocations -- on the real site-packages data
set (identical machines) and on a synthetic one (machines +-30% in speed and line rate;
full runs repeat it on full-duplex links as a diagnostic, outside the targets). It
measures bytes on the wire (the interfaces' counters) and time per iteration, then evaluates
the same allocations with the simulator's wire-level model (:mod:`envs.param_server.wire`:
each machine's compute speed calibrated from its measured compute phases, line rate = the
kernel's rate) and compares bytes, times and rankings.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.param_server import DEFAULT_MODEL, load_agent, planners
from benchmarks.report import markdown_table, parse_args, print_targets, target, write_report
from envs.param_server.dataset import SparseDataset, synthesize
from envs.param_server.env import SITEPACKAGES_PATH
from envs.param_server.generator import MachineProfile, ZipfTopicGenerator
from envs.param_server.instance import Allocation, ParamServerInstance
from envs.param_server.simulator import evaluate
from envs.param_server.wire import evaluate_wire
from heuristics.param_server import repair_capacity
from runtimes.compare import kendall_tau, ranking_kept, relative_errors
from runtimes.launch import RunFailed
from runtimes.netns import KernelRefused
from runtimes.ps import RealResult, RunConfig, quotas, run_allocations

NAME = "ps_real"
COLUMNS = ["allocation", "real_iteration_ms", "sim_iteration_ms", "time_rel_error",
           "real_wire_KB", "sim_wire_KB", "bytes_rel_error", "payload_KB", "payload_sim_ms",
           "real_compute_ms_max", "loss_first", "loss_last"]


def cases(machines: int, real_bandwidth: float, generated_bandwidth: float
          ) -> list[tuple[str, SparseDataset, ParamServerInstance]]:
    """``(name, data, instance)``; the instances' bandwidth is the links' line rate. The
    generated case has heterogeneous machines (speed and line rate +-30%)."""
    real = SparseDataset.load(SITEPACKAGES_PATH)
    real_instance = real.to_instance(machines, MachineProfile(bandwidth_bytes_per_s=real_bandwidth),
                                     np.random.default_rng(0))
    generator = ZipfTopicGenerator(
        num_blocks=32, num_shards=96, num_machines=machines, samples_range=(64, 256),
        nnz_per_sample=10.0, shard_bytes_range=(1024, 4096),
        machines=MachineProfile(bandwidth_bytes_per_s=generated_bandwidth, heterogeneity=0.3))
    synthetic_instance = generator(np.random.default_rng(1))
    synthetic = synthesize(synthetic_instance, np.random.default_rng(2))
    return [("sitepackages", real, real_instance), ("generated", synthetic, synthetic_instance)]


def random_allocation(instance: ParamServerInstance, seed: int) -> Allocation:
    rng = np.random.default_rng(seed)
    return repair_capacity(instance, rng.integers(0, instance.num_machines, instance.num_blocks),
                           rng.integers(0, instance.num_machines, instance.num_shards))


def calibrated_speeds(results: dict[str, RealResult], machines: int) -> np.ndarray:
    """Per machine, the median non-zeros per second of its measured compute phases (its CPU
    quota); a machine that never held data gets the median of the others."""
    rates: list[list[float]] = [[] for _ in range(machines)]
    for result in results.values():
        for m, (nnz, compute) in enumerate(zip(result.nnz_per_rank, result.compute_s_per_rank,
                                               strict=True)):
            if nnz > 0 and compute > 0:
                rates[m].append(nnz / compute)
    everyone = float(np.median([r for machine in rates for r in machine]))
    return np.array([float(np.median(r)) if r else everyone for r in rates])


def compare(case: str, instance: ParamServerInstance, allocations: dict[str, Allocation],
            measured: dict[str, RealResult]) -> list[dict[str, Any]]:
    speeds = calibrated_speeds(measured, instance.num_machines)
    simulated = instance.with_machines(speeds, instance.bandwidth_bytes_per_s,
                                       instance.memory_bytes)
    rows = []
    for name, allocation in allocations.items():
        wire, payload, real = (evaluate_wire(simulated, allocation),
                               evaluate(simulated, allocation), measured[name])
        rows.append({
            "case": case, "allocation": name, "real_iteration_ms": real.iteration_s * 1e3,
            "sim_iteration_ms": wire.iteration_s * 1e3,
            "time_rel_error": real.iteration_s / wire.iteration_s - 1,
            "real_wire_KB": real.wire_bytes / 1e3, "sim_wire_KB": wire.wire_bytes / 1e3,
            "bytes_rel_error": (real.wire_bytes / wire.wire_bytes - 1) if wire.wire_bytes
            else float(real.wire_bytes > 0),
            "payload_KB": payload.remote_bytes / 1e3, "payload_sim_ms": payload.iteration_s * 1e3,
            "real_compute_ms_max": max(real.compute_s_per_rank) * 1e3,
            "loss_first": real.losses[0], "loss_last": real.losses[-1],
            "calibrated_speed_nnz_per_s": speeds.tolist(), "real_round_ms": [t * 1e3 for t in real.round_s],
            "real_tx_bytes_per_rank": real.tx_bytes_per_rank,
            "sim_link_wire_bytes": wire.link_wire_bytes.tolist()})
    return rows


def case_targets(case: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    real = [r["real_iteration_ms"] for r in rows]
    sim = [r["sim_iteration_ms"] for r in rows]
    kept, pairs = ranking_kept(real, sim)
    by_name = {r["allocation"]: r for r in rows}
    return {
        f"{case}_bytes_max_rel_error": target(max(abs(r["bytes_rel_error"]) for r in rows),
                                              0.10, "<="),
        f"{case}_time_median_rel_error": target(float(np.median(relative_errors(real, sim))),
                                                0.25, "<="),
        f"{case}_ranking_pairs_kept": target(kept / pairs if pairs else None, 1.0, ">=",
                                                None if pairs else "no plan pairs >10% apart"),
        f"{case}_kendall_tau": target(kendall_tau(real, sim), 0.6, ">="),
        f"{case}_real_two_step_over_hash": target(
            by_name["two_step"]["real_iteration_ms"] / by_name["hash"]["real_iteration_ms"],
            1.0, "<"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}")
    parser.add_argument("--bandwidth-mbps", type=float, default=20.0,
                        help="line rate of each machine's link, generated data")
    parser.add_argument("--sitepackages-bandwidth-mbps", type=float, default=4.0,
                        help="line rate of each machine's link, site-packages data (its "
                             "32-byte keys move ~5x fewer bytes per iteration)")
    parser.add_argument("--machines", type=int, default=4, help="processes (machines)")
    parser.add_argument("--cpus", type=float, default=RunConfig.cpus,
                        help="CPU quota of each machine process")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="trained agent (.zip)")
    args = parse_args(NAME, argv, parser)
    problem = (f"--machines must be >= 2 (one machine sends no bytes to measure), got "
               f"{args.machines}" if args.machines < 2 else
               "--bandwidth-mbps, --sitepackages-bandwidth-mbps and --cpus must be > 0"
               if min(args.bandwidth_mbps, args.sitepackages_bandwidth_mbps, args.cpus) <= 0 else
               f"--model: {args.model} does not exist" if not Path(args.model).exists() else None)
    if problem:
        parser.exit(2, f"{parser.prog}: error: {problem}\n")
    table = planners(load_agent(args.model))
    config = RunConfig(iterations=3 if args.quick else 5, rounds=2 if args.quick else 4,
                       warmup_iterations=2, cpus=args.cpus)
    rows, targets, sections = [], {}, []
    runs = [(case, dataset, instance, config) for case, dataset, instance in
            cases(args.machines, args.sitepackages_bandwidth_mbps * 1e6 / 8,
                  args.bandwidth_mbps * 1e6 / 8)]
    if not args.quick:   # a diagnostic: full-duplex links, which the simulator does not model
        case, dataset, instance, _ = runs[-1]
        runs.append((f"{case}-duplex", dataset, instance, replace(config, duplex=True)))
    for case, dataset, instance, case_config in runs:
        allocations = {name: planner(instance) for name, planner in table.items()}
        allocations.update({f"random-{seed}": random_allocation(instance, seed)
                            for seed in (1, 2)})
        rates = instance.bandwidth_bytes_per_s * 8 / 1e6
        try:
            measured = run_allocations(dataset, instance, allocations, case_config)
        except (KernelRefused, RunFailed) as error:  # keep the other case's results
            rows.append({"case": case, "error": str(error)})
            targets[f"{case}_real_run"] = target(0.0, 1.0, ">=", f"real run failed: {error}")
            sections.append(f"### {case}\n\nreal run failed: {error}")
            continue
        case_rows = compare(case, instance, allocations, measured)
        rows.extend(case_rows)
        found = case_targets(case, case_rows)
        if not case_config.duplex:
            targets.update(found)
        sections.append(
            f"### {case} ({instance.num_blocks} blocks, {instance.num_shards} shards, "
            f"{instance.num_machines} processes; {'duplex' if case_config.duplex else 'shared'}"
            " links of "
            f"{', '.join(f'{r:.1f}' for r in rates)} Mbit/s line rate; CPU quotas "
            f"{', '.join(f'{q:.2f}' for q in quotas(instance, args.cpus))}; Kendall tau "
            f"{found[f'{case}_kendall_tau']['value']:.2f})"
            "\n\n" + markdown_table(case_rows, COLUMNS))
    body = (f"Real iteration time = median over {config.rounds} interleaved rounds of the "
            f"slowest process's mean over {config.iterations} iterations; bytes = sum of the "
            "machines' eth0 tx_bytes per iteration. Simulated = envs.param_server.wire "
            "(payload framed as gloo/TCP/Ethernet) with the calibrated compute speed; "
            "payload_* = the planners' payload model.\n\n" + "\n\n".join(sections))
    write_report(NAME, args.out, rows, targets, body,
                 extra={"config": {"bandwidth_mbps": args.bandwidth_mbps,
                                   "sitepackages_bandwidth_mbps":
                                       args.sitepackages_bandwidth_mbps,
                                   "machines": args.machines, "cpus": args.cpus,
                                   "iterations": config.iterations, "rounds": config.rounds,
                                   "warmup_iterations": config.warmup_iterations}})
    print(body)
    print_targets(targets)


if __name__ == "__main__":
    main()
