"""Simulator predictions for live runs: the same jobs, arrivals and scheduler in the
SparkDagShop simulator, job by job against what Spark measured."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluate import run_episode
from agents.scheduler import Scheduler
from envs.spark_dag import Job, ObservationLimits, Stage
from spark_integration.executor import RunResult, default_template
from spark_integration.jobs import JobSpec


def workload_for(specs: Sequence[JobSpec], templates: dict[str, Job],
                 tasks_per_executor: int = 2) -> list[Job]:
    """The simulator's view of a live stream: each job is its query's traced template."""
    jobs = []
    for spec in specs:
        template = templates.get(spec.dag.name) or default_template(spec, tasks_per_executor)
        jobs.append(Job(spec.name, spec.arrival_s, template.stages))
    return jobs


def simulate(jobs: Sequence[Job], scheduler: Scheduler, num_executors: int,
             limits: ObservationLimits) -> dict[str, float]:
    """Job name -> simulated JCT with ``scheduler`` on ``num_executors`` executors.

    The live cluster has no separate network to contend for and its executors need no
    per-job warm-up, so network capacity is unlimited (= E) and both delays are 0; per-node
    driver overheads are already folded into the calibrated task times."""
    from envs.spark_dag.env import SparkDagShopEnv

    env = SparkDagShopEnv(num_executors=num_executors, network_capacity=float(num_executors),
                          moving_delay_s=0.0, warmup_s=0.0, max_jobs=limits.max_jobs,
                          max_stages=limits.max_stages,
                          cap_share_multiples=list(limits.cap_share_multiples))
    run_episode(env, scheduler, options={"instance": list(jobs)})
    sim = env.sim
    return {job.name: float(end - job.arrival_s)
            for job, end in zip(sim.jobs, sim.job_completion_s, strict=True)}


def compare(result: RunResult, predicted: dict[str, float]) -> list[dict[str, Any]]:
    """Per finished job: measured and predicted JCT and the relative error."""
    rows = []
    for job in result.finished:
        sim = predicted.get(job.name)
        if sim is None:
            continue
        rows.append({"job": job.name, "measured_jct_s": job.jct_s, "predicted_jct_s": sim,
                     "rel_error": abs(sim - job.jct_s) / job.jct_s})
    return rows


def summarize(rows: Sequence[dict[str, Any]], tolerance: float = 0.25) -> dict[str, float]:
    errors = np.array([r["rel_error"] for r in rows]) if rows else np.array([np.nan])
    return {"jobs": len(rows), "median_rel_error": float(np.median(errors)),
            "max_rel_error": float(np.max(errors)),
            "share_within": float(np.mean(errors <= tolerance))}


def load_trace(path: str | Path) -> tuple[dict[str, Job], dict[str, dict[str, float]]]:
    """Templates of a trace written by :mod:`spark_integration.tracegen` and, per query and
    node, the factor its task times were scaled by to match the node's wall time."""
    from spark_integration.tracegen import load_templates

    templates = load_templates(path)
    calibration = json.loads(Path(path).read_text()).get("calibration", {})
    scales = {q: {node: float(info.get("scale", 1.0)) for node, info in nodes.items()}
              for q, nodes in calibration.items()}
    return templates, scales


def blend(templates: dict[str, Job], scales: dict[str, dict[str, float]],
          alpha: float) -> dict[str, Job]:
    """Templates whose task times are ``raw * (1 + alpha * (scale - 1))``: ``alpha = 0`` keeps
    the executors' task metrics only, ``alpha = 1`` charges a node's whole driver-side overhead
    to its executors (exact for a node running alone). Concurrent nodes overlap part of that
    overhead, so the fitted ``alpha`` lies in between."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = {}
    for query, job in templates.items():
        stages = []
        for stage in job.stages:
            scale = scales.get(query, {}).get(stage.name, 1.0)
            factor = (1 + alpha * (scale - 1)) / scale
            stages.append(Stage(id=stage.id, parents=stage.parents, num_tasks=stage.num_tasks,
                                network_s=stage.network_s * factor,
                                compute_s=stage.compute_s * factor,
                                write_s=stage.write_s * factor,
                                network_bytes=stage.network_bytes, name=stage.name))
        out[query] = Job(job.name, job.arrival_s, stages)
    return out


def fit_alpha(runs: Sequence[tuple[RunResult, Sequence[JobSpec], Callable[[], Scheduler]]],
              templates: dict[str, Job], scales: dict[str, dict[str, float]],
              num_executors: int, limits: ObservationLimits,
              grid: Sequence[float] = tuple(np.linspace(0.0, 1.0, 11))) -> float:
    """The ``alpha`` of :func:`blend` minimising the median per-job relative JCT error over
    ``runs`` (live result, its job specs, a factory of the scheduler that drove it)."""
    best, best_error = 1.0, math.inf
    for alpha in grid:
        blended = blend(templates, scales, float(alpha))
        errors = []
        for result, specs, factory in runs:
            predicted = simulate(workload_for(specs, blended), factory(), num_executors, limits)
            errors += [r["rel_error"] for r in compare(result, predicted)]
        error = float(np.median(errors)) if errors else math.inf
        if error < best_error:
            best, best_error = float(alpha), error
    return best
