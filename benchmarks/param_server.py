"""``python -m benchmarks.param_server [--quick] [--out DIR] [--model PATH]``.

Remote traffic and time per iteration (the simulator's model) of every heuristic and the
trained agent on generated instances (Zipf popularity + topics, heterogeneous machines) and on
the real site-packages data set, with M = 4, 8, 16 machines; and the gap to the CP-SAT
optimum on small instances. Ratios are aggregated as geometric means over instances.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import markdown_table, parse_args, target, write_report
from envs.param_server.env import SITEPACKAGES_PATH, ParamServerEnv
from envs.param_server.generator import (
    ClusteredToyGenerator,
    DatasetGenerator,
    MachineProfile,
    ZipfTopicGenerator,
)
from envs.param_server.instance import Allocation, ParamServerInstance
from envs.param_server.simulator import evaluate
from heuristics.exact.param_server import param_server_optimal
from heuristics.param_server import HEURISTICS

NAME = "param_server"
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "param_server_agent.zip"
HETEROGENEOUS = MachineProfile(heterogeneity=0.3)


def agent_allocation(scheduler: Any, instance: ParamServerInstance,
                     max_machines: int = 16) -> Allocation:
    """Play a Scheduler (e.g. a trained agent) through ``ParamServer-v0`` on ``instance``."""
    from agents.evaluate import run_episode

    env = ParamServerEnv(max_machines=max_machines)
    info = run_episode(env, scheduler, options={"instance": instance})
    if not info.get("complete"):
        raise RuntimeError(f"agent did not finish instance {instance.name!r} "
                           f"({info['invalid_actions']} invalid actions)")
    allocation = info["allocation"]
    return Allocation(np.array(allocation["block_machine"]),
                      np.array(allocation["shard_machine"]))


def load_agent(path: str | Path | None) -> tuple[Any, int] | None:
    """``(scheduler, max_machines)`` of a trained model, or None when the file is absent."""
    if path is None or not Path(path).exists():
        return None
    import torch

    from agents.scheduler import load_scheduler

    torch.set_num_threads(1)  # batch-1 inference: extra threads only contend (6x slower here)
    scheduler = load_scheduler(str(path))
    max_machines = scheduler.model.observation_space["machine_features"].shape[0]
    return scheduler, max_machines


def planners(agent: tuple[Any, int] | None) -> dict[str, Any]:
    table: dict[str, Any] = dict(HEURISTICS)
    if agent is not None:
        scheduler, max_machines = agent
        table["agent"] = lambda instance: agent_allocation(scheduler, instance, max_machines)
    return table


def instances(quick: bool) -> list[tuple[str, int, ParamServerInstance]]:
    seeds = range(2 if quick else 5)
    cases = []
    for machines in (4, 8, 16):
        generator = ZipfTopicGenerator(num_machines=machines, machines=HETEROGENEOUS)
        real = DatasetGenerator(SITEPACKAGES_PATH, machines, HETEROGENEOUS)
        for seed in seeds:
            cases.append(("generated", seed, generator(np.random.default_rng(1000 + seed))))
            cases.append(("sitepackages", seed, real(np.random.default_rng(2000 + seed))))
    return cases


def small_instances(quick: bool) -> list[tuple[str, ParamServerInstance]]:
    seeds = range(2 if quick else 6)
    generator = ZipfTopicGenerator(num_blocks=8, num_shards=16, num_machines=3, num_topics=3,
                                   density=0.25, machines=HETEROGENEOUS)
    small = [(f"zipf-b8-s16-m3/seed{seed}",
              generator(np.random.default_rng(3000 + seed))) for seed in seeds]
    return small + [("toy-clusters-m3", ClusteredToyGenerator()(np.random.default_rng(4000)))]


def geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="trained agent (.zip)")
    parser.add_argument("--exact-time-limit-s", type=float, default=20.0)
    args = parse_args(NAME, argv, parser)
    agent = load_agent(args.model)
    table = planners(agent)
    rows: list[dict[str, Any]] = []
    for group, seed, instance in instances(args.quick):
        for name, planner in table.items():
            started = time.perf_counter()
            allocation = planner(instance)
            wall = time.perf_counter() - started
            result = evaluate(instance, allocation)
            rows.append({"set": group, "instance": f"{instance.name}/seed{seed}",
                         "M": instance.num_machines,
                         "scheduler": name, "iteration_ms": result.iteration_s * 1e3,
                         "remote_MB": result.remote_bytes / 1e6, "plan_s": wall})
    small_rows = []
    for label, instance in small_instances(args.quick):
        exact = param_server_optimal(instance, time_limit_s=args.exact_time_limit_s)
        for name, planner in table.items():
            value = evaluate(instance, planner(instance)).iteration_s
            small_rows.append({"instance": label, "scheduler": name,
                               "iteration_ms": value * 1e3,
                               "optimal_ms": exact.iteration_s * 1e3,
                               "proven_optimal": exact.proven_optimal,
                               "gap": value / exact.iteration_s - 1.0,
                               "exact_s": exact.wall_s})
    summary, targets = summarise(rows, small_rows, agent is not None)
    body = "\n\n".join([
        "## Per machine count (geometric means over instances; ratios vs `hash`, with the "
        "min-max range over instances)",
        markdown_table(summary, ["set", "M", "scheduler", "iteration_ms", "remote_MB",
                                 "time_vs_hash", "time_range", "traffic_vs_hash",
                                 "traffic_range", "plan_s"]),
        "## Gap to the CP-SAT optimum on small instances (B=8, S=16, M=3, and a toy)",
        markdown_table(small_rows, ["instance", "scheduler", "iteration_ms", "optimal_ms",
                                    "proven_optimal", "gap", "exact_s"], floatfmt=".4f"),
        "" if agent is not None else f"No trained agent at {args.model}: agent rows missing.",
    ])
    write_report(NAME, args.out, rows + [{"small": True, **r} for r in small_rows], targets,
                 body, extra={"summary": summary})
    print(body)


def summarise(rows: list[dict[str, Any]], small_rows: list[dict[str, Any]],
              have_agent: bool) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    by_key = {(r["instance"], r["scheduler"]): r for r in rows}
    names = sorted({r["instance"] for r in rows})

    def ratios(scheduler: str, reference: str, field: str, subset=None) -> list[float]:
        return [by_key[(n, scheduler)][field] / by_key[(n, reference)][field] for n in names
                if (n, scheduler) in by_key and (subset is None or subset(by_key[(n, reference)]))]

    summary = []
    for group in ("generated", "sitepackages"):
        for machines in (4, 8, 16):
            def pick(row, group=group, machines=machines):
                return row["set"] == group and row["M"] == machines
            for scheduler in sorted({r["scheduler"] for r in rows}):
                cells = [r for r in rows if pick(r) and r["scheduler"] == scheduler]
                if not cells:
                    continue
                time_ratios = ratios(scheduler, "hash", "iteration_ms", pick)
                traffic_ratios = ratios(scheduler, "hash", "remote_MB", pick)
                summary.append({
                    "set": group, "M": machines, "scheduler": scheduler,
                    "iteration_ms": geomean([c["iteration_ms"] for c in cells]),
                    "remote_MB": geomean([c["remote_MB"] for c in cells]),
                    "time_vs_hash": geomean(time_ratios),
                    "time_range": f"{min(time_ratios):.3f}-{max(time_ratios):.3f}",
                    "traffic_vs_hash": geomean(traffic_ratios),
                    "traffic_range": f"{min(traffic_ratios):.3f}-{max(traffic_ratios):.3f}",
                    "plan_s": float(np.mean([c["plan_s"] for c in cells]))})
    targets = {
        "two_step_traffic_reduction_vs_hash": target(
            1 - geomean(ratios("two_step", "hash", "remote_MB")), 0.40, ">="),
        "two_step_time_reduction_vs_hash": target(
            1 - geomean(ratios("two_step", "hash", "iteration_ms")), 0.25, ">="),
        "agent_time_over_two_step": target(
            geomean(ratios("agent", "two_step", "iteration_ms")) - 1 if have_agent
            else float("inf"), 0.05, "<="),
        "two_step_mean_gap_to_optimal_small": target(
            float(np.mean([r["gap"] for r in small_rows if r["scheduler"] == "two_step"])),
            0.10, "<="),
    }
    return summary, targets


if __name__ == "__main__":
    main()
