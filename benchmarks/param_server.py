"""``python -m benchmarks.param_server [--quick] [--out DIR] [--model PATH] [--ppo-model PATH]``.

Remote traffic and time per iteration (the simulator's model) of every heuristic and the
trained agents on generated instances (Zipf popularity + topics, heterogeneous machines) and on
the real site-packages data set, with M = 4, 8, 16 machines; and the gap to the CP-SAT
optimum on small instances. Ratios are aggregated as geometric means over instances.

``agent`` is the shipped agent (``two_step`` plus a learned choice of partition variants,
:mod:`agents.param_server.agent`); ``ppo_placer`` is the earlier MaskablePPO policy that
places items one at a time through ``ParamServer-v0``. A missing model is not skipped: its
rows say ``missing``, its targets are not met and the command exits with status 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import markdown_table, parse_args, target, write_report
from envs import PROBLEMS
from envs.param_server.env import SITEPACKAGES_PATH, ParamServerEnv
from envs.param_server.generator import (
    ClusteredToyGenerator,
    DatasetGenerator,
    MachineProfile,
    ZipfTopicGenerator,
)
from envs.param_server.instance import Allocation, ParamServerInstance
from envs.param_server.simulator import evaluate
from envs.shipped import MODELS_DIR
from heuristics.exact.param_server import param_server_optimal
from heuristics.param_server import HEURISTICS

NAME = "param_server"
DEFAULT_RANKER = MODELS_DIR / PROBLEMS["param_server"].agent
DEFAULT_MODEL = MODELS_DIR / "param_server_agent.zip"  # the MaskablePPO placer (benchmarks.ps_real)
AGENT_TARGETS = {"agent_mean_time_over_two_step": 0.98,
                 "agent_worst_cell_mean_time_over_two_step": 0.98,
                 "agent_worst_time_over_two_step": 1.10}
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
    """The heuristics and, when given, a MaskablePPO placer as ``agent`` (``ps_real``'s table)."""
    table: dict[str, Any] = dict(HEURISTICS)
    if agent is not None:
        scheduler, max_machines = agent
        table["agent"] = lambda instance: agent_allocation(scheduler, instance, max_machines)
    return table


def benchmark_planners(agent: Any | None, ppo: tuple[Any, int] | None) -> dict[str, Any]:
    """Name -> planner; ``None`` for a model that is missing (its rows say so)."""
    table: dict[str, Any] = dict(HEURISTICS)
    table["agent"] = agent.plan if agent is not None else None
    table["ppo_placer"] = planners(ppo).get("agent")
    return table


def load_ranker_agent(path: str | Path) -> Any | None:
    from agents.param_server.agent import AgentModelError
    from agents.param_server.agent import load_agent as load_ranker

    try:
        return load_ranker(path)
    except AgentModelError as error:
        print(f"MISSING AGENT: {error}", file=sys.stderr)
        return None


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
    parser.add_argument("--model", default=str(DEFAULT_RANKER),
                        help="the agent's ranker (.ranker.json, train_agents.py train)")
    parser.add_argument("--ppo-model", default=str(DEFAULT_MODEL),
                        help="the earlier MaskablePPO placer (.zip)")
    parser.add_argument("--exact-time-limit-s", type=float, default=20.0)
    args = parse_args(NAME, argv, parser)
    agent = load_ranker_agent(args.model)
    ppo = load_agent(args.ppo_model)
    if ppo is None:
        print(f"MISSING AGENT: no MaskablePPO placer at {args.ppo_model}", file=sys.stderr)
    table = benchmark_planners(agent, ppo)
    rows: list[dict[str, Any]] = []
    for group, seed, instance in instances(args.quick):
        for name, planner in table.items():
            if planner is None:
                rows.append({"set": group, "instance": f"{instance.name}/seed{seed}",
                             "M": instance.num_machines, "scheduler": name, "missing": True})
                continue
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
            if planner is None:
                continue
            value = evaluate(instance, planner(instance)).iteration_s
            small_rows.append({"instance": label, "scheduler": name,
                               "iteration_ms": value * 1e3,
                               "optimal_ms": exact.iteration_s * 1e3,
                               "proven_optimal": exact.proven_optimal,
                               "gap": value / exact.iteration_s - 1.0,
                               "exact_s": exact.wall_s})
    summary, targets = summarise(rows, small_rows)
    body = "\n\n".join([
        "## Per machine count (geometric means over instances; ratios vs `hash`, with the "
        "min-max range over instances)",
        markdown_table(summary, ["set", "M", "scheduler", "iteration_ms", "remote_MB",
                                 "time_vs_hash", "time_range", "traffic_vs_hash",
                                 "traffic_range", "plan_s"]),
        "## Gap to the CP-SAT optimum on small instances (B=8, S=16, M=3, and a toy)",
        markdown_table(small_rows, ["instance", "scheduler", "iteration_ms", "optimal_ms",
                                    "proven_optimal", "gap", "exact_s"], floatfmt=".4f"),
        "## Agent against `two_step` (same instances; per-instance ratios, geometric mean "
        "and worst)",
        markdown_table(agent_cells(rows), ["set", "M", "scheduler", "mean_vs_two_step",
                                           "worst_vs_two_step", "better", "plan_s"]),
        "\n".join(f"**MISSING**: no {name} model ({path}); its rows are marked missing and "
                  f"its targets are not met." for name, path, loaded in
                  (("agent", args.model, agent), ("ppo_placer", args.ppo_model, ppo))
                  if loaded is None),
    ])
    write_report(NAME, args.out, rows + [{"small": True, **r} for r in small_rows], targets,
                 body, extra={"summary": summary})
    print(body)
    if agent is None or ppo is None:
        raise SystemExit(1)


def agent_cells(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (set, M) and learned scheduler: its time over ``two_step``'s (or ``missing``)."""
    two_step = {r["instance"]: r for r in rows if r["scheduler"] == "two_step"}
    cells = []
    for group in ("generated", "sitepackages"):
        for machines in (4, 8, 16):
            for scheduler in ("agent", "ppo_placer"):
                mine = [r for r in rows if r["set"] == group and r["M"] == machines
                        and r["scheduler"] == scheduler]
                if not mine:
                    continue
                if any(r.get("missing") for r in mine):
                    cells.append({"set": group, "M": machines, "scheduler": scheduler,
                                  "mean_vs_two_step": "missing", "worst_vs_two_step": "missing",
                                  "better": "missing", "plan_s": "missing"})
                    continue
                ratios = [r["iteration_ms"] / two_step[r["instance"]]["iteration_ms"]
                          for r in mine]
                cells.append({"set": group, "M": machines, "scheduler": scheduler,
                              "mean_vs_two_step": geomean(ratios),
                              "worst_vs_two_step": max(ratios),
                              "better": f"{sum(x < 1 - 1e-9 for x in ratios)}/{len(ratios)}",
                              "plan_s": float(np.mean([r["plan_s"] for r in mine]))})
    return cells


def summarise(rows: list[dict[str, Any]], small_rows: list[dict[str, Any]]
              ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    missing = {r["scheduler"] for r in rows if r.get("missing")}
    rows = [r for r in rows if not r.get("missing")]
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
        "two_step_mean_gap_to_optimal_small": target(
            float(np.mean([r["gap"] for r in small_rows if r["scheduler"] == "two_step"])),
            0.10, "<="),
    }
    agent_ratios = ratios("agent", "two_step", "iteration_ms")
    have_agent = "agent" not in missing and agent_ratios
    cells = [c for c in agent_cells(rows) if c["scheduler"] == "agent"]
    values = {
        "agent_mean_time_over_two_step": geomean(agent_ratios) if have_agent else None,
        "agent_worst_cell_mean_time_over_two_step":
            max(c["mean_vs_two_step"] for c in cells) if have_agent else None,
        "agent_worst_time_over_two_step": max(agent_ratios) if have_agent else None,
    }
    absent = None if have_agent else "no agent rows (missing agent)"
    targets.update({name: target(values[name], threshold, "<=", absent)
                    for name, threshold in AGENT_TARGETS.items()})
    return summary, targets


if __name__ == "__main__":
    main()
