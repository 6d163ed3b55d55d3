"""Offloading benchmark: heuristics, the trained agent and the CP-SAT optimum.

``python -m benchmarks.offload [--quick] [--out DIR] [--model PATH] [--engine local|spark
--master URL]`` writes ``DIR/offload.json`` and ``DIR/offload.md`` (the instances run through
:mod:`spark_integration.runner`: here, or one Spark task per batch on ``--master``):

1. small batches (3..6 jobs) at each bandwidth class: makespan / proven optimum, mean and p95,
   for every heuristic and the agent;
2. large batches (20 and 50 jobs): makespan / LP lower bound and ``joint`` / ``neurosurgeon``;
3. env throughput (steps per second with a random masked policy).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from agents.compare import SHIPPED_MODELS, summarise
from agents.report import plot_ratios, ratio_markdown
from benchmarks.report import (
    Missing,
    markdown_table,
    parse_args,
    print_targets,
    target,
    write_report,
)
from envs import PROBLEMS
from envs.offload import BANDWIDTH_CLASSES_MBPS, ProfileGenerator
from spark_integration.sweeps import Engine, offload_outcomes


def small_batches(instances_per_class: int, models: dict[str, str], seed: int,
                  engine: Engine) -> list[dict]:
    rows, everything = [], []
    for offset, label in enumerate(BANDWIDTH_CLASSES_MBPS):
        rng = np.random.default_rng(seed + offset)
        generator = ProfileGenerator(min_jobs=3, max_jobs=6, bandwidth=label)
        group = offload_outcomes([generator(rng) for _ in range(instances_per_class)], models,
                                 engine, f"{label}: CP-SAT optimum and planners")
        everything += group
        rows += summarise(group, label)
        print(f"  small batches at {label}: {len(group)} instances, "
              f"{sum(o.proven_optimal for o in group)} proven optimal", flush=True)
    rows += summarise(everything, "all")
    return rows


def large_batches(instances: int, sizes: tuple[int, ...], classes: list[str], seed: int,
                  joint_time_limit_s: float, engine: Engine) -> list[dict]:
    rows = []
    for size in sizes:
        for label in classes:
            rng = np.random.default_rng(seed + size)
            generator = ProfileGenerator(min_jobs=size, max_jobs=size, bandwidth=label)
            group = offload_outcomes([generator(rng) for _ in range(instances)], {}, engine,
                                     f"{size} jobs at {label}: planners", exact=False,
                                     joint_time_limit_s=joint_time_limit_s)
            summary = summarise(group, f"{size} jobs, {label}")
            speedups = [o.makespan_s["joint"] / o.makespan_s["neurosurgeon"] for o in group]
            for row in summary:
                row["jobs"], row["bandwidth"] = size, label
                if row["scheduler"] == "joint":
                    row["joint_over_neurosurgeon_mean"] = float(np.mean(speedups))
            rows += summary
            print(f"  large batches: {size} jobs at {label} done", flush=True)
    return rows


def env_throughput(seconds: float) -> dict:
    env = gym.make(PROBLEMS["offload"].env_id).unwrapped
    rng = np.random.default_rng(0)
    steps = episodes = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        _, info = env.reset(seed=episodes)
        episodes += 1
        done = False
        while not done:
            action = int(rng.choice(np.flatnonzero(info["action_mask"])))
            _, _, terminated, truncated, info = env.step(action)
            steps += 1
            done = terminated or truncated
    elapsed = time.perf_counter() - started
    return {"steps_per_s": steps / elapsed, "episodes_per_s": episodes / elapsed,
            "steps": steps, "seconds": elapsed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.offload")
    parser.add_argument("--model", default=str(SHIPPED_MODELS[PROBLEMS["offload"].env_id]),
                        help="trained agent to include (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", choices=("local", "spark"), default="local",
                        help="run the instances here or on Spark (docs/runner.md)")
    parser.add_argument("--master", help="Spark master URL for --engine spark")
    args = parse_args("offload", argv, parser)
    if args.engine == "spark" and not args.master:
        parser.error("--engine spark needs --master URL")
    engine = Engine(args.engine, args.master)
    quick = args.quick
    agents, missing = {}, Missing()
    if Path(args.model).exists():
        agents["agent"] = args.model
    else:
        missing.add("agent", f"{args.model} not found: no agent rows, its target fails")

    print("offload benchmark: small batches vs the CP-SAT optimum", flush=True)
    small = small_batches(15 if quick else 200, agents, args.seed, engine)
    print("offload benchmark: large batches vs the lower bound", flush=True)
    large = large_batches(3 if quick else 50, (20, 50),
                          ["4G"] if quick else list(BANDWIDTH_CLASSES_MBPS),
                          args.seed + 1000, joint_time_limit_s=1.0 if quick else 2.0,
                          engine=engine)
    throughput = env_throughput(5.0 if quick else 20.0)

    overall = {row["scheduler"]: row for row in small if row["group"] == "all"}
    joint_4g = [row for row in large if row["scheduler"] == "joint" and row["bandwidth"] == "4G"]
    ratio_4g = float(np.mean([row["joint_over_neurosurgeon_mean"] for row in joint_4g]))
    targets = {
        "joint_mean_ratio_to_optimum": target(overall["joint"]["mean_ratio"], 1.03, "<="),
        "joint_p95_ratio_to_optimum": target(overall["joint"]["p95_ratio"], 1.10, "<="),
        "joint_over_neurosurgeon_4G_large": target(ratio_4g, 0.75, "<="),
    }
    targets["agent_mean_ratio_to_optimum"] = target(
        overall["agent"]["mean_ratio"] if "agent" in overall else None, 1.05, "<=",
        None if "agent" in overall else f"no agent rows ({args.model} not found)")

    large_columns = ["jobs", "bandwidth", "scheduler", "instances", "mean_ratio", "p95_ratio",
                     "median_plan_ms"]
    speedup_rows = [{"jobs": r["jobs"], "bandwidth": r["bandwidth"],
                     "joint / neurosurgeon makespan": r["joint_over_neurosurgeon_mean"]}
                    for r in large if r["scheduler"] == "joint"]
    body = "\n\n".join([
        "## Small batches (3..6 jobs): makespan / CP-SAT optimum",
        ratio_markdown(small),
        "## Large batches: makespan / LP lower bound",
        markdown_table(large, large_columns),
        "## joint vs neurosurgeon on large batches (mean makespan ratio; < 1 means joint wins)",
        markdown_table(speedup_rows, ["jobs", "bandwidth", "joint / neurosurgeon makespan"]),
        "## Env throughput (random masked policy)",
        markdown_table([throughput], ["steps_per_s", "episodes_per_s", "steps", "seconds"], ".1f"),
    ])
    rows = ([{"part": "small", **row} for row in small] + [{"part": "large", **row} for row in large]
            + [{"part": "throughput", **throughput}])
    path = write_report("offload", args.out, rows, targets, body,
                        extra={"quick": quick, "model": args.model if agents else None,
                               "missing": missing.entries,
                               "engine": args.engine, "master": args.master})
    plot_ratios([overall[name] for name in overall], Path(args.out) / "offload.png",
                "makespan / CP-SAT optimum, 3..6 jobs, all bandwidth classes")
    print(f"wrote {path}")
    print_targets(targets)


if __name__ == "__main__":
    main()
