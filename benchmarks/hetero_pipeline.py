"""Time per iteration of every pipeline planner, the exact optimum and the trained agents.

``python -m benchmarks.hetero_pipeline [--quick] [--out DIR] [--agent PATH] [--ppo-agent PATH]``

Device sets of K = 4..6 devices with fastest-to-slowest speed ratios 1x, 2x, 4x and 8x, on
the shipped training profiles (``data/profiles/training``). Every plan is scored by the exact
1F1B event simulation; the brute-force optimum (``heuristics.exact.hetero_pipeline``) is
computed for every instance.

``agent`` is the shipped agent (``cluster_dp`` plus learned improvement moves,
:mod:`agents.hetero_pipeline.agent`); ``ppo_imitation`` is the earlier policy that plays
``HeteroPipeline-v0`` (behaviour cloning of ``cluster_dp``). A missing model is not skipped:
its rows say ``missing``, its targets are not met and the command exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import markdown_table, parse_args, target, write_report
from envs import PROBLEMS
from envs.hetero_pipeline.closed_form import estimate_iteration_s
from envs.hetero_pipeline.env import HeteroPipelineEnv
from envs.hetero_pipeline.generator import HeteroPipelineGenerator
from envs.hetero_pipeline.instance import PipelineInstance, PipelinePlan
from envs.hetero_pipeline.simulator import simulate
from envs.scheduler import Scheduler, run_episode
from envs.shipped import MODELS_DIR
from heuristics.exact.hetero_pipeline import pipeline_optimal
from heuristics.hetero_pipeline import HEURISTICS

DEFAULT_AGENT = MODELS_DIR / PROBLEMS["hetero_pipeline"].agent
DEFAULT_PPO_AGENT = MODELS_DIR / "hetero_pipeline_agent.zip"
RATIOS = (1.0, 2.0, 4.0, 8.0)
AGENT_MEAN_BOUND = 1.02
AGENT_WORST_BOUND = 1.15


def _score(instance, plan: PipelinePlan, planning_s: float) -> dict:
    result = simulate(instance, plan)
    return {"iteration_s": result.iteration_s if result.fits_memory else float("inf"),
            "closed_form_s": estimate_iteration_s(instance, plan),
            "fits_memory": result.fits_memory, "stages": plan.num_stages,
            "devices_used": sum(len(s.devices) for s in plan.stages),
            "planning_s": planning_s}


def draw_gantt_png(instance, plans: dict[str, PipelinePlan], path: Path) -> None:
    """One Gantt panel per plan: stages and link directions over one iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"F": "tab:blue", "B": "tab:orange", "act": "tab:green", "grad": "tab:red",
              "allreduce": "tab:purple"}
    figure, axes = plt.subplots(len(plans), 1, figsize=(10, 2.2 * len(plans)), squeeze=False)
    for axis, (name, plan) in zip(axes[:, 0], plans.items(), strict=True):
        result = simulate(instance, plan, trace=True)
        rows = sorted({i.resource for i in result.trace},
                      key=lambda r: (r.split()[0] != "stage", r))
        for interval in result.trace:
            axis.barh(rows.index(interval.resource), interval.end_s - interval.start_s,
                      left=interval.start_s, color=colors[interval.kind], edgecolor="white",
                      linewidth=0.3)
        axis.set_yticks(range(len(rows)), rows, fontsize=7)
        axis.invert_yaxis()
        axis.set_title(f"{name}: {result.iteration_s:.3f} s per iteration", fontsize=9)
    axes[-1, 0].set_xlabel("seconds (F blue, B orange, activation green, gradient red, "
                           "all-reduce purple)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


@dataclass
class LearnedPlanners:
    """The shipped agent and the earlier MaskablePPO policy (with the env it plays); None for
    a missing model."""

    agent: Any | None
    scheduler: Scheduler | None
    env: HeteroPipelineEnv | None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hetero_pipeline")
    parser.add_argument("--agent", default=str(DEFAULT_AGENT),
                        help="the agent's move ranker (.json, agents.hetero_pipeline.train)")
    parser.add_argument("--ppo-agent", default=str(DEFAULT_PPO_AGENT),
                        help="the earlier MaskablePPO zip that plays the env")
    parser.add_argument("--seed", type=int, default=2024)
    return parser


def load_learned(agent_path: str, ppo_path: str) -> LearnedPlanners:
    """Load both learned planners; a missing one prints ``MISSING AGENT`` and stays None."""
    from agents.hetero_pipeline.agent import AgentModelError, load_agent

    try:
        agent = load_agent(agent_path)
    except AgentModelError as error:
        print(f"MISSING AGENT: {error}", file=sys.stderr)
        agent = None
    if not Path(ppo_path).exists():
        print(f"MISSING AGENT: no MaskablePPO policy at {ppo_path}", file=sys.stderr)
        return LearnedPlanners(agent, None, None)
    from agents.scheduler import load_scheduler

    return LearnedPlanners(agent, load_scheduler(ppo_path),
                           HeteroPipelineEnv(max_devices=8, max_layers=12))


def _timed_row(base: dict[str, Any], name: str, instance: PipelineInstance,
               planner: Callable[[PipelineInstance], PipelinePlan]) -> dict[str, Any]:
    start = time.perf_counter()
    plan = planner(instance)
    return {**base, "scheduler": name, **_score(instance, plan, time.perf_counter() - start)}


def _missing_row(base: dict[str, Any], name: str) -> dict[str, Any]:
    return {**base, "scheduler": name, "missing": True, "iteration_s": float("nan")}


def _ppo_row(base: dict[str, Any], instance: PipelineInstance, scheduler: Scheduler,
             env: HeteroPipelineEnv) -> dict[str, Any]:
    """Play the MaskablePPO policy through the env on ``instance``; its plan's row."""
    start = time.perf_counter()
    info = run_episode(env, scheduler, options={"instance": instance})
    plan = PipelinePlan.from_groups([tuple(s["devices"]) for s in info["plan"]["stages"]],
                                    [0] + [s["stop"] for s in info["plan"]["stages"]])
    return {**base, "scheduler": "ppo_imitation", "invalid_actions": info["invalid_actions"],
            **_score(instance, plan, time.perf_counter() - start)}


def instance_rows(instance: PipelineInstance, base: dict[str, Any],
                  learned: LearnedPlanners) -> list[dict[str, Any]]:
    """One row per planner on ``instance``: the heuristics, the optimum, then the learned."""
    planners = dict(HEURISTICS)
    planners["optimal"] = pipeline_optimal
    rows = [_timed_row(base, name, instance, planner) for name, planner in planners.items()]
    rows.append(_missing_row(base, "agent") if learned.agent is None
                else _timed_row(base, "agent", instance, learned.agent.plan))
    rows.append(_missing_row(base, "ppo_imitation")
                if learned.scheduler is None or learned.env is None
                else _ppo_row(base, instance, learned.scheduler, learned.env))
    return rows


def benchmark_rows(seed: int, per_ratio: int, learned: LearnedPlanners) -> list[dict[str, Any]]:
    """``per_ratio`` instances per speed ratio, each seeded by ``(seed, ratio)``, planned by
    every planner."""
    rows: list[dict[str, Any]] = []
    for ratio in RATIOS:
        generator = HeteroPipelineGenerator(num_devices=(4, 6), speed_ratio=(ratio, ratio))
        rng = np.random.default_rng([seed, int(ratio)])
        for index in range(per_ratio):
            instance = generator(rng)
            base = {"ratio": ratio, "instance": index, "model": instance.model.name,
                    "K": instance.num_devices, "M": instance.num_microbatches}
            planned = instance_rows(instance, base, learned)
            rows += planned
            print(f"ratio {ratio:g} instance {index}: " + ", ".join(
                f"{r['scheduler']} {r['iteration_s']:.3f}s" for r in planned), flush=True)
    return rows


def times(rows: list[dict[str, Any]], name: str,
          ratios: Sequence[float] = RATIOS) -> np.ndarray:
    """``name``'s iteration times over the instances of ``ratios``, in row order."""
    return np.array([r["iteration_s"] for r in rows
                     if r["scheduler"] == name and r["ratio"] in ratios])


def gap_summary(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Per speed ratio and planner: mean time, mean and worst gap to the optimum, memory fit."""
    summary = []
    for ratio in RATIOS:
        opt = times(rows, "optimal", (ratio,))
        for name in names:
            t = times(rows, name, (ratio,))
            gap = t / opt - 1
            summary.append({"ratio": f"{ratio:g}x", "scheduler": name,
                            "mean_iteration_s": float(np.mean(t)),
                            "mean_gap_to_opt_%": 100 * float(np.mean(gap)),
                            "max_gap_to_opt_%": 100 * float(np.max(gap)),
                            "memory_ok": f"{sum(np.isfinite(t))}/{len(t)}"})
    return summary


def cluster_dp_findings(rows: list[dict[str, Any]], per_ratio: int, names: list[str]
                        ) -> tuple[dict[str, dict], list[str]]:
    """The cluster_dp targets (against pipedream_dp at >= 4x and the optimum) and the report's
    first section: the gap summary and those two findings."""
    big = (4.0, 8.0)
    reduction = 1 - times(rows, "cluster_dp", big) / times(rows, "pipedream_dp", big)
    cluster_gap = times(rows, "cluster_dp") / times(rows, "optimal") - 1
    targets = {
        "cluster_dp_time_reduction_vs_pipedream_dp_ratio>=4x":
            target(float(np.mean(reduction)), 0.20, ">="),
        "cluster_dp_mean_gap_to_optimal_K<=6": target(float(np.mean(cluster_gap)), 0.05, "<="),
    }
    body = [f"{per_ratio} instances per speed ratio, K = 4..6 devices, models "
            f"{sorted({r['model'] for r in rows})}; time per iteration from the 1F1B event "
            "simulation (gaps are per-instance ratios, then averaged).", "",
            markdown_table(gap_summary(rows, names),
                           ["ratio", "scheduler", "mean_iteration_s", "mean_gap_to_opt_%",
                            "max_gap_to_opt_%", "memory_ok"]),
            "", f"cluster_dp vs pipedream_dp at >= 4x: mean time reduction "
            f"{100 * np.mean(reduction):.1f}% (min {100 * np.min(reduction):.1f}%, max "
            f"{100 * np.max(reduction):.1f}%).",
            f"cluster_dp vs optimal: mean gap {100 * np.mean(cluster_gap):.2f}%, worst "
            f"{100 * np.max(cluster_gap):.2f}%."]
    return targets, body


def learned_table(rows: list[dict[str, Any]], models: Sequence[tuple[str, Any, str]]
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """Per learned planner ``(name, model, path)`` and speed ratio: its times over
    cluster_dp's and the optimum's ("missing" for a missing model), and a ``**MISSING**`` line
    per missing model."""
    table, missing_lines = [], []
    for name, model, path in models:
        for ratio in RATIOS:
            if model is None:
                table.append({"ratio": f"{ratio:g}x", "scheduler": name,
                              "mean_vs_cluster_dp": "missing", "worst_vs_cluster_dp": "missing",
                              "better": "missing", "mean_vs_optimal": "missing"})
                continue
            over = times(rows, name, (ratio,)) / times(rows, "cluster_dp", (ratio,))
            table.append({"ratio": f"{ratio:g}x", "scheduler": name,
                          "mean_vs_cluster_dp": float(np.mean(over)),
                          "worst_vs_cluster_dp": float(np.max(over)),
                          "better": f"{int(np.sum(over < 1 - 1e-9))}/{len(over)}",
                          "mean_vs_optimal": float(np.mean(
                              times(rows, name, (ratio,)) / times(rows, "optimal", (ratio,))))})
        if model is None:
            missing_lines.append(f"**MISSING**: no {name} model at {path}; its rows are marked "
                                 f"missing and its targets are not met.")
    return table, missing_lines


def agent_targets(table: list[dict[str, Any]], missing: bool) -> dict[str, dict]:
    """The agent against cluster_dp at its worst speed ratio: mean and worst instance."""
    agent_rows = [r for r in table if r["scheduler"] == "agent"]
    absent = "no agent rows (missing agent)" if missing else None
    return {
        "agent_mean_over_cluster_dp_every_ratio": target(
            None if missing else max(r["mean_vs_cluster_dp"] for r in agent_rows),
            AGENT_MEAN_BOUND, "<=", absent),
        "agent_worst_over_cluster_dp": target(
            None if missing else max(r["worst_vs_cluster_dp"] for r in agent_rows),
            AGENT_WORST_BOUND, "<=", absent),
    }


def closed_form_line(rows: list[dict[str, Any]]) -> str:
    """How far the closed-form lower bound sits below the simulation, over the fitting plans."""
    bound_gap = np.array([r["iteration_s"] / r["closed_form_s"] - 1 for r in rows
                          if np.isfinite(r["iteration_s"])])
    return (f"closed form (lower bound) vs simulation over all plans: mean gap "
            f"{100 * bound_gap.mean():.2f}%, max {100 * bound_gap.max():.2f}%.")


def example_gantt(seed: int, out: str) -> Path:
    """pipedream_dp vs cluster_dp on one 8x instance of 5 devices, as a PNG under ``out``."""
    example = HeteroPipelineGenerator(num_devices=(5, 5), speed_ratio=(8.0, 8.0))(
        np.random.default_rng([seed, 99]))
    gantt_path = Path(out) / "hetero_pipeline_gantt.png"
    gantt_path.parent.mkdir(parents=True, exist_ok=True)
    draw_gantt_png(example, {name: HEURISTICS[name](example)
                             for name in ("pipedream_dp", "cluster_dp")}, gantt_path)
    return gantt_path


def main(argv: list[str] | None = None) -> None:
    args = parse_args("hetero_pipeline", argv, build_parser())
    per_ratio = 3 if args.quick else 10
    learned = load_learned(args.agent, args.ppo_agent)
    rows = benchmark_rows(args.seed, per_ratio, learned)
    names = list(HEURISTICS) + [name for name, model in (("agent", learned.agent),
                                                         ("ppo_imitation", learned.scheduler))
                                if model is not None] + ["optimal"]
    targets, body = cluster_dp_findings(rows, per_ratio, names)
    table, missing_lines = learned_table(rows, (("agent", learned.agent, args.agent),
                                                ("ppo_imitation", learned.scheduler,
                                                 args.ppo_agent)))
    body += missing_lines
    targets.update(agent_targets(table, learned.agent is None))
    body += ["", "Learned schedulers against cluster_dp (per-instance time ratios; the "
             "targets take the worst speed ratio):", "",
             markdown_table(table, ["ratio", "scheduler", "mean_vs_cluster_dp",
                                    "worst_vs_cluster_dp", "better", "mean_vs_optimal"],
                            floatfmt=".4f"), ""]
    body.append(closed_form_line(rows))
    gantt_path = example_gantt(args.seed, args.out)
    body.append(f"Gantt of pipedream_dp vs cluster_dp on one 8x instance: {gantt_path.name}")
    path = write_report("hetero_pipeline", args.out, rows, targets, "\n".join(body))
    print(f"wrote {path}")
    if learned.agent is None or learned.scheduler is None:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
