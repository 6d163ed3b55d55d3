"""Simulator predictions for live runs: the same jobs, arrivals and scheduler in the
SparkDagShop simulator, job by job against what Spark measured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agents.evaluate import run_episode
from agents.scheduler import Scheduler
from envs.spark_dag import Job, ObservationLimits
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
