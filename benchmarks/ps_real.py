"""``python -m benchmarks.ps_real [--quick] [--out DIR] [--bandwidth-mbps X] [--machines M]``.

Runs the real parameter-server loop (:mod:`benchmarks.ps_runtime`: softmax regression over
torch.distributed/gloo, one process per machine on 127.0.0.1, emulated link bandwidth) under
every allocation -- the heuristics, the trained agent when present, and two random
allocations -- on the real site-packages data set and on a synthetic one. It measures bytes
exchanged and time per iteration, then evaluates the same allocations with the simulator
(machine speed calibrated from the measured compute phase, bandwidth = the emulated link) and
compares the two rankings (Kendall tau).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from benchmarks.param_server import DEFAULT_MODEL, load_agent, planners
from benchmarks.ps_runtime import RealRunConfig, run_allocations
from benchmarks.report import markdown_table, parse_args, target, write_report
from envs.param_server.dataset import SparseDataset, synthesize
from envs.param_server.env import SITEPACKAGES_PATH
from envs.param_server.generator import MachineProfile, ZipfTopicGenerator
from envs.param_server.instance import Allocation, ParamServerInstance
from envs.param_server.simulator import evaluate
from heuristics.param_server import repair_capacity

NAME = "ps_real"


def cases(machines: int, real_bandwidth: float, generated_bandwidth: float
          ) -> list[tuple[str, SparseDataset, ParamServerInstance, float]]:
    """``(name, data, instance, emulated bandwidth in bytes/s)`` for both data sets."""
    real = SparseDataset.load(SITEPACKAGES_PATH)
    real_instance = real.to_instance(machines, MachineProfile(bandwidth_bytes_per_s=real_bandwidth),
                                     np.random.default_rng(0))
    generator = ZipfTopicGenerator(
        num_blocks=32, num_shards=96, num_machines=machines, samples_range=(64, 256),
        nnz_per_sample=10.0, shard_bytes_range=(1024, 4096),
        machines=MachineProfile(bandwidth_bytes_per_s=generated_bandwidth))
    synthetic_instance = generator(np.random.default_rng(1))
    synthetic = synthesize(synthetic_instance, np.random.default_rng(2))
    return [("sitepackages", real, real_instance, real_bandwidth),
            ("generated", synthetic, synthetic_instance, generated_bandwidth)]


def random_allocation(instance: ParamServerInstance, seed: int) -> Allocation:
    rng = np.random.default_rng(seed)
    return repair_capacity(instance, rng.integers(0, instance.num_machines, instance.num_blocks),
                           rng.integers(0, instance.num_machines, instance.num_shards))


def calibrated_speed(results: dict[str, Any]) -> float:
    """Median non-zeros per second of the measured compute phases (ranks with data)."""
    rates = [nnz / compute for result in results.values()
             for nnz, compute in zip(result.nnz_per_rank, result.compute_s_per_rank, strict=True)
             if nnz > 0 and compute > 0]
    return float(np.median(rates))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}")
    parser.add_argument("--bandwidth-mbps", type=float, default=20.0,
                        help="emulated link bandwidth per process, generated data")
    parser.add_argument("--sitepackages-bandwidth-mbps", type=float, default=4.0,
                        help="emulated link bandwidth per process, site-packages data (its "
                             "32-byte keys move ~5x fewer bytes per iteration)")
    parser.add_argument("--machines", type=int, default=4, help="processes (machines)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="trained agent (.zip)")
    args = parse_args(NAME, argv, parser)
    table = planners(load_agent(args.model))
    rows, targets, sections = [], {}, []
    for case, dataset, instance, bandwidth in cases(args.machines,
                                                    args.sitepackages_bandwidth_mbps * 1e6 / 8,
                                                    args.bandwidth_mbps * 1e6 / 8):
        config = RealRunConfig(iterations=3 if args.quick else 5,
                               rounds=2 if args.quick else 4, warmup_iterations=2,
                               bandwidth_bytes_per_s=bandwidth)
        allocations = {name: planner(instance) for name, planner in table.items()}
        allocations.update({f"random-{seed}": random_allocation(instance, seed)
                            for seed in (1, 2)})
        try:
            measured = run_allocations(dataset, instance, allocations, config)
        except (RuntimeError, OSError) as error:  # keep the other case's results
            rows.append({"case": case, "error": str(error)})
            for name in ("rank_agreement_kendall_tau", "real_two_step_time_over_hash"):
                targets[f"{case}_{name}"] = target(float("nan"), 0.6 if "tau" in name else 1.0,
                                                   ">=" if "tau" in name else "<")
            sections.append(f"### {case}\n\nreal run failed: {error}")
            continue
        speed = calibrated_speed(measured)
        simulated = instance.with_machines(
            np.full(instance.num_machines, speed), np.full(instance.num_machines, bandwidth),
            instance.memory_bytes)
        case_rows = []
        for name, allocation in allocations.items():
            model = evaluate(simulated, allocation)
            real = measured[name]
            case_rows.append({
                "case": case, "allocation": name, "real_iteration_ms": real.iteration_s * 1e3,
                "sim_iteration_ms": model.iteration_s * 1e3,
                "real_remote_KB": real.remote_bytes / 1e3,
                "sim_remote_KB": model.remote_bytes / 1e3,
                "real_compute_ms_max": max(real.compute_s_per_rank) * 1e3,
                "loss_first": real.losses[0], "loss_last": real.losses[-1],
                "calibrated_speed_nnz_per_s": speed})
        rows.extend(case_rows)
        tau = kendalltau([r["real_iteration_ms"] for r in case_rows],
                         [r["sim_iteration_ms"] for r in case_rows]).statistic
        byte_error = max(abs(r["real_remote_KB"] - r["sim_remote_KB"]) / r["sim_remote_KB"]
                         for r in case_rows if r["sim_remote_KB"] > 0)
        by_name = {r["allocation"]: r for r in case_rows}
        targets[f"{case}_rank_agreement_kendall_tau"] = target(tau, 0.6, ">=")
        targets[f"{case}_real_bytes_rel_error_vs_sim"] = target(byte_error, 0.0, "<=")
        targets[f"{case}_real_two_step_time_over_hash"] = target(
            by_name["two_step"]["real_iteration_ms"] / by_name["hash"]["real_iteration_ms"],
            1.0, "<")
        sections.append(f"### {case} ({instance.num_blocks} blocks, {instance.num_shards} "
                        f"shards, {instance.num_machines} processes, link "
                        f"{bandwidth * 8 / 1e6:g} Mbit/s; Kendall tau {tau:.2f})\n\n"
                        + markdown_table(case_rows, ["allocation", "real_iteration_ms",
                                                     "sim_iteration_ms", "real_remote_KB",
                                                     "sim_remote_KB", "real_compute_ms_max",
                                                     "loss_first", "loss_last"]))
    body = (f"Real iteration time = median over {config.rounds} interleaved rounds of the "
            f"slowest process's mean over {config.iterations} iterations; the simulator uses "
            f"the calibrated compute speed and the emulated link.\n\n" + "\n\n".join(sections))
    write_report(NAME, args.out, rows, targets, body,
                 extra={"config": {"bandwidth_mbps": args.bandwidth_mbps,
                                   "sitepackages_bandwidth_mbps":
                                       args.sitepackages_bandwidth_mbps,
                                   "machines": args.machines, "iterations": config.iterations,
                                   "rounds": config.rounds,
                                   "warmup_iterations": config.warmup_iterations}})
    print(body)


if __name__ == "__main__":
    main()
