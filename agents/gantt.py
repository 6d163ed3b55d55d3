"""Gantt charts of one instance, for every env: its machines, devices or executors as rows, one
panel per scheduler, a legend naming the colours (jobs, or the kind of work)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from agents.evaluate import IncompleteEpisode, incomplete_reason, run_episode
from agents.model_check import load_for_env
from envs import PROBLEMS, problem_for

#: the heuristics drawn next to the models: a simple baseline and a strong planner per problem
GANTT_HEURISTICS = {
    "offload": ("neurosurgeon", "partition_only", "joint"),
    "spark_dag": ("fifo", "critical_path"),
    "param_server": ("hash", "two_step"),
    "hetero_pipeline": ("equal_layers", "cluster_dp"),
}
MAX_LEGEND_ENTRIES = 20


@dataclass
class Bar:
    row: str
    start_s: float
    end_s: float
    key: str  # the legend entry (and colour) of the bar


@dataclass
class Chart:
    title: str
    rows: list[str]
    legend_title: str
    bars: list[Bar] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Title, rows and legend (the bars themselves only in the PNG: a Spark chart has
        thousands)."""
        return {"title": self.title, "rows": self.rows, "legend": self.legend_title,
                "keys": list(dict.fromkeys(bar.key for bar in self.bars)),
                "bars": len(self.bars)}


def failed_chart(name: str, reason: str) -> Chart:
    """The panel of a scheduler that did not complete the instance: no bars, its reason."""
    return Chart(f"{name}: FAILED, {reason}", ["no plan"], "job")


def _offload_charts(env_kwargs: dict, models: dict[str, str], seed: int) -> list[Chart]:
    from agents.offload.compare import _env_kwargs
    from agents.offload.planning import plan_with_scheduler
    from envs.offload import simulate
    from envs.offload.simulator import RESOURCES
    from heuristics.offload import HEURISTICS

    env = gym.make(PROBLEMS["offload"].env_id, **env_kwargs).unwrapped
    env.reset(seed=seed)
    instance = env.instance
    plans = {name: (HEURISTICS[name](instance, 2.0) if name == "joint"
                    else HEURISTICS[name](instance)) for name in GANTT_HEURISTICS["offload"]}
    failures = {}
    for name, path in models.items():
        scheduler = load_for_env(path, PROBLEMS["offload"].env_id, env.observation_space, check_shapes=False)
        try:
            plans[name] = plan_with_scheduler(scheduler, instance, _env_kwargs(scheduler))
        except IncompleteEpisode as failure:
            failures[name] = str(failure)
    charts = []
    for name, plan in plans.items():
        result = simulate(instance, plan)
        chart = Chart(f"{name}: makespan {result.makespan_s:.3f} s", list(RESOURCES), "job")
        chart.bars = [Bar(resource, i.start_s, i.end_s, instance.jobs[i.job].name)
                      for resource in RESOURCES for i in result.intervals[resource]]
        charts.append(chart)
    return charts + [failed_chart(name, reason) for name, reason in failures.items()]


def _spark_charts(env_kwargs: dict, models: dict[str, str], seed: int) -> list[Chart]:
    import numpy as np

    from envs.spark_dag.env import SparkDagShopEnv
    from heuristics.spark_dag import make_heuristic

    charts = []
    contenders = [(name, "graph", None) for name in GANTT_HEURISTICS["spark_dag"]]
    contenders += [(name, "graph" if path.endswith(".json") else "padded", path)
                   for name, path in models.items()]
    for name, mode, path in contenders:
        env = SparkDagShopEnv(**{**env_kwargs, "observation_mode": mode, "record": True})
        scheduler = (make_heuristic(name) if path is None
                     else load_for_env(path, PROBLEMS["spark_dag"].env_id, env.observation_space))
        info = run_episode(env, scheduler, seed=seed)
        reason = incomplete_reason(info)
        if reason is not None:
            charts.append(failed_chart(name, reason))
            continue
        sim = env.sim
        job_of_task = [job.name for job in sim.jobs for stage in job.stages
                       for _ in range(stage.num_tasks)]
        record = sim.record
        chart = Chart(f"{name}: mean JCT {info['mean_jct_s']:.1f} s",
                      [f"executor {e}" for e in range(sim.num_executors)], "job")
        for task in np.flatnonzero(record.executor >= 0):
            end = record.end_s[task] if np.isfinite(record.end_s[task]) else sim.time_s
            chart.bars.append(Bar(f"executor {record.executor[task]}", record.start_s[task],
                                  end, job_of_task[task]))
        charts.append(chart)
    return charts


def _planner_plans(env_id: str, env_kwargs: dict, models: dict[str, str], seed: int,
                   heuristics: dict, model_plan: Callable[[Any, dict], Any]
                   ) -> tuple[Any, dict, dict]:
    """Param server and pipeline: the instance of ``seed``, name -> plan for the drawn
    heuristics and each model that completed it (``model_plan(env, final info)`` reads a
    model's plan), and name -> reason for each model that did not."""
    env = gym.make(env_id, **env_kwargs).unwrapped
    env.reset(seed=seed)
    instance = env.instance
    plans = {name: heuristics[name](instance) for name in GANTT_HEURISTICS[problem_for(env_id).name]}
    failures = {}
    for name, path in models.items():
        loaded = load_for_env(path, env_id, env.observation_space)
        if hasattr(loaded, "plan"):  # a planner agent
            plans[name] = loaded.plan(instance)
            continue
        info = run_episode(env, loaded, options={"instance": instance})
        reason = incomplete_reason(info)
        if reason is None:
            plans[name] = model_plan(env, info)
        else:
            failures[name] = reason
    return instance, plans, failures


def _param_server_charts(env_kwargs: dict, models: dict[str, str], seed: int) -> list[Chart]:
    from envs.param_server.instance import Allocation
    from envs.param_server.simulator import evaluate
    from heuristics.param_server import HEURISTICS

    instance, allocations, failures = _planner_plans(
        PROBLEMS["param_server"].env_id, env_kwargs, models, seed, HEURISTICS,
        lambda env, info: Allocation(**info["allocation"]))
    charts = []
    for name, allocation in allocations.items():
        result = evaluate(instance, allocation)
        rows = [f"machine {m}" for m in range(instance.num_machines)]
        chart = Chart(f"{name}: iteration {result.iteration_s * 1e3:.2f} ms", rows, "work")
        for row, compute, comm in zip(rows, result.compute_s, result.comm_s, strict=True):
            chart.bars += [Bar(row, 0.0, float(compute), "compute"),
                           Bar(row, float(compute), float(compute + comm), "network")]
        charts.append(chart)
    return charts + [failed_chart(name, reason) for name, reason in failures.items()]


def _pipeline_charts(env_kwargs: dict, models: dict[str, str], seed: int) -> list[Chart]:
    from envs.hetero_pipeline.simulator import simulate
    from heuristics.hetero_pipeline import HEURISTICS

    instance, plans, failures = _planner_plans(PROBLEMS["hetero_pipeline"].env_id, env_kwargs,
                                               models, seed, HEURISTICS,
                                               lambda env, info: env.final_plan)
    charts = []
    for name, plan in plans.items():
        result = simulate(instance, plan, trace=True)
        stage_rows = {f"stage {s}": f"stage {s} (devices {','.join(map(str, stage.devices))})"
                      for s, stage in enumerate(plan.stages)}
        rows = list(stage_rows.values()) + sorted({i.resource for i in result.trace
                                                   if i.resource not in stage_rows})
        chart = Chart(f"{name}: iteration {result.iteration_s:.4f} s", rows, "work")
        chart.bars = [Bar(stage_rows.get(i.resource, i.resource), i.start_s, i.end_s,
                          {"F": "forward", "B": "backward"}.get(i.kind, i.kind))
                      for i in result.trace]
        charts.append(chart)
    return charts + [failed_chart(name, reason) for name, reason in failures.items()]


def gantt_charts(env_id: str, models: dict[str, str], seed: int) -> list[Chart]:
    """The charts of the instance of ``seed``: the env's :data:`GANTT_HEURISTICS`, then each
    model (name -> path)."""
    from agents.config import load_config

    env_kwargs = load_config(env_id).env_kwargs
    build = {"offload": _offload_charts, "spark_dag": _spark_charts,
             "param_server": _param_server_charts,
             "hetero_pipeline": _pipeline_charts}[problem_for(env_id).name]
    return build(env_kwargs, models, seed)


def plot_charts(charts: Sequence[Chart], path: str | Path, title: str) -> Path:
    """One panel per chart, a shared time axis, each panel with its legend on the right (the
    first :data:`MAX_LEGEND_ENTRIES` keys; the same key has the same colour in every panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from envs.offload.render import save_figure

    keys = list(dict.fromkeys(bar.key for chart in charts for bar in chart.bars))
    colors = plt.get_cmap("tab20")
    color = {key: colors(k % 20) for k, key in enumerate(keys)}
    heights = [0.6 + 0.22 * len(chart.rows) for chart in charts]
    figure, axes = plt.subplots(len(charts), 1, figsize=(11, sum(heights) + 0.8), sharex=True,
                                squeeze=False, gridspec_kw={"height_ratios": heights})
    horizon = max((bar.end_s for chart in charts for bar in chart.bars), default=1.0)
    for axis, chart in zip(axes[:, 0], charts, strict=True):
        position = {row: r for r, row in enumerate(chart.rows)}
        for key in dict.fromkeys(bar.key for bar in chart.bars):
            for row in chart.rows:
                spans = [(bar.start_s, bar.end_s - bar.start_s) for bar in chart.bars
                         if bar.key == key and bar.row == row]
                if spans:
                    axis.broken_barh(spans, (position[row] - 0.4, 0.8), facecolors=color[key],
                                     edgecolor="black", linewidth=0.3)
        axis.set_yticks(range(len(chart.rows)), chart.rows,
                        fontsize=8 if len(chart.rows) <= 16 else 5)
        axis.set_ylim(len(chart.rows) - 0.5, -0.5)
        axis.set_xlim(0, horizon * 1.02)
        axis.set_title(chart.title, fontsize=9, loc="left")
        shown = list(dict.fromkeys(bar.key for bar in chart.bars))
        handles = [Patch(facecolor=color[key], edgecolor="black", label=key)
                   for key in shown[:MAX_LEGEND_ENTRIES]]
        if len(shown) > MAX_LEGEND_ENTRIES:
            handles.append(Patch(facecolor="white", label=f"+{len(shown) - MAX_LEGEND_ENTRIES} more"))
        axis.legend(handles=handles, title=chart.legend_title, fontsize=6, title_fontsize=7,
                    loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=2 if len(handles) > 10 else 1)
    axes[-1, 0].set_xlabel("time (s)")
    figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)
