"""Time per iteration of every pipeline planner, the exact optimum and the trained agent.

``python -m benchmarks.hetero_pipeline [--quick] [--out DIR] [--agent PATH]``

Device sets of K = 4..6 devices with fastest-to-slowest speed ratios 1x, 2x, 4x and 8x, on
the shipped training profiles (``data/profiles/training``). Every plan is scored by the exact
1F1B event simulation; the brute-force optimum (``heuristics.exact.hetero_pipeline``) is
computed for every instance.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.report import markdown_table, parse_args, target, write_report
from envs.hetero_pipeline.closed_form import estimate_iteration_s
from envs.hetero_pipeline.env import HeteroPipelineEnv
from envs.hetero_pipeline.generator import HeteroPipelineGenerator
from envs.hetero_pipeline.instance import PipelinePlan
from envs.hetero_pipeline.simulator import simulate
from heuristics.exact.hetero_pipeline import pipeline_optimal
from heuristics.hetero_pipeline import HEURISTICS

DEFAULT_AGENT = Path(__file__).resolve().parents[1] / "models" / "hetero_pipeline_agent.zip"
RATIOS = (1.0, 2.0, 4.0, 8.0)


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


def main(argv: list[str] | None = None) -> None:
    extra = argparse.ArgumentParser(prog="python -m benchmarks.hetero_pipeline")
    extra.add_argument("--agent", default=str(DEFAULT_AGENT),
                       help="MaskablePPO zip to evaluate (skipped if missing)")
    extra.add_argument("--seed", type=int, default=2024)
    args = parse_args("hetero_pipeline", argv, extra)
    per_ratio = 3 if args.quick else 10
    scheduler = None
    if Path(args.agent).exists():
        from agents.evaluate import run_episode
        from agents.scheduler import load_scheduler

        scheduler = load_scheduler(args.agent)
        env = HeteroPipelineEnv(max_devices=8, max_layers=12)
    rows = []
    for ratio in RATIOS:
        generator = HeteroPipelineGenerator(num_devices=(4, 6), speed_ratio=(ratio, ratio))
        rng = np.random.default_rng([args.seed, int(ratio)])
        for index in range(per_ratio):
            instance = generator(rng)
            base = {"ratio": ratio, "instance": index, "model": instance.model.name,
                    "K": instance.num_devices, "M": instance.num_microbatches}
            planners = dict(HEURISTICS)
            planners["optimal"] = pipeline_optimal
            for name, planner in planners.items():
                start = time.perf_counter()
                plan = planner(instance)
                rows.append({**base, "scheduler": name,
                             **_score(instance, plan, time.perf_counter() - start)})
            if scheduler is not None:
                start = time.perf_counter()
                info = run_episode(env, scheduler, options={"instance": instance})
                plan = PipelinePlan.from_groups(
                    [tuple(s["devices"]) for s in info["plan"]["stages"]],
                    [0] + [s["stop"] for s in info["plan"]["stages"]])
                rows.append({**base, "scheduler": "agent", "invalid_actions":
                             info["invalid_actions"],
                             **_score(instance, plan, time.perf_counter() - start)})
            print(f"ratio {ratio:g} instance {index}: " + ", ".join(
                f"{r['scheduler']} {r['iteration_s']:.3f}s" for r in rows
                if r["ratio"] == ratio and r["instance"] == index), flush=True)

    def times(name: str, ratios=RATIOS) -> np.ndarray:
        return np.array([r["iteration_s"] for r in rows
                         if r["scheduler"] == name and r["ratio"] in ratios])

    names = list(HEURISTICS) + (["agent"] if scheduler is not None else []) + ["optimal"]
    optimal = times("optimal")
    summary = []
    for ratio in RATIOS:
        opt = times("optimal", (ratio,))
        for name in names:
            t = times(name, (ratio,))
            gap = t / opt - 1
            summary.append({"ratio": f"{ratio:g}x", "scheduler": name,
                            "mean_iteration_s": float(np.mean(t)),
                            "mean_gap_to_opt_%": 100 * float(np.mean(gap)),
                            "max_gap_to_opt_%": 100 * float(np.max(gap)),
                            "memory_ok": f"{sum(np.isfinite(t))}/{len(t)}"})
    big = (4.0, 8.0)
    reduction = 1 - times("cluster_dp", big) / times("pipedream_dp", big)
    cluster_gap = times("cluster_dp") / optimal - 1
    targets = {
        "cluster_dp_time_reduction_vs_pipedream_dp_ratio>=4x":
            target(float(np.mean(reduction)), 0.20, ">="),
        "cluster_dp_mean_gap_to_optimal_K<=6": target(float(np.mean(cluster_gap)), 0.05, "<="),
    }
    body = [f"{per_ratio} instances per speed ratio, K = 4..6 devices, models "
            f"{sorted({r['model'] for r in rows})}; time per iteration from the 1F1B event "
            "simulation (gaps are per-instance ratios, then averaged).", "",
            markdown_table(summary, ["ratio", "scheduler", "mean_iteration_s",
                                     "mean_gap_to_opt_%", "max_gap_to_opt_%", "memory_ok"]),
            "", f"cluster_dp vs pipedream_dp at >= 4x: mean time reduction "
            f"{100 * np.mean(reduction):.1f}% (min {100 * np.min(reduction):.1f}%, max "
            f"{100 * np.max(reduction):.1f}%).",
            f"cluster_dp vs optimal: mean gap {100 * np.mean(cluster_gap):.2f}%, worst "
            f"{100 * np.max(cluster_gap):.2f}%."]
    if scheduler is not None:
        agent_gap = times("agent") / times("cluster_dp") - 1
        targets["agent_mean_gap_to_cluster_dp"] = target(float(np.mean(agent_gap)), 0.05, "<=")
        body.append(f"agent vs cluster_dp: mean gap {100 * np.mean(agent_gap):.2f}% "
                    f"(median {100 * np.median(agent_gap):.2f}%, worst "
                    f"{100 * np.max(agent_gap):.2f}%); agent: {args.agent}")
    else:
        body.append(f"agent: no model at {args.agent}; the agent target is not measured.")
    bound_gap = np.array([r["iteration_s"] / r["closed_form_s"] - 1 for r in rows
                          if np.isfinite(r["iteration_s"])])
    body.append(f"closed form (lower bound) vs simulation over all plans: mean gap "
                f"{100 * bound_gap.mean():.2f}%, max {100 * bound_gap.max():.2f}%.")
    example = HeteroPipelineGenerator(num_devices=(5, 5), speed_ratio=(8.0, 8.0))(
        np.random.default_rng([args.seed, 99]))
    gantt_path = Path(args.out) / "hetero_pipeline_gantt.png"
    gantt_path.parent.mkdir(parents=True, exist_ok=True)
    draw_gantt_png(example, {name: HEURISTICS[name](example)
                             for name in ("pipedream_dp", "cluster_dp")}, gantt_path)
    body.append(f"Gantt of pipedream_dp vs cluster_dp on one 8x instance: {gantt_path.name}")
    path = write_report("hetero_pipeline", args.out, rows, targets, "\n".join(body))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
