"""Workload generators (Jumanji style: ``generator(rng) -> list[Job]``)."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from envs.spark_dag.workload import Job, Stage


class Generator(abc.ABC):
    @abc.abstractmethod
    def __call__(self, rng: np.random.Generator) -> list[Job]: ...


def _in_tree_parents(num_stages: int, rng: np.random.Generator) -> list[list[int]]:
    """Join trees like TPC-H plans: every stage but the last feeds one later stage (within the
    next three), so leaves are scans and the last stage is the result."""
    parents: list[list[int]] = [[] for _ in range(num_stages)]
    for stage in range(num_stages - 1):
        child = int(rng.integers(stage + 1, min(stage + 3, num_stages - 1) + 1))
        parents[child].append(stage)
    return parents


@dataclass
class TPCHLikeGenerator(Generator):
    """Jobs shaped like Decima's TPC-H traces, with a network/compute mix knob.

    Per job: stages ``clip(round(LogNormal(ln median_stages, 0.45)), min_stages, max_stages)``
    in a join tree; per stage tasks ``clip(round(LogNormal(ln median_tasks, 1.0)), 1,
    max_tasks)`` and a mean task duration ``LogNormal(ln median_task_s, 0.8)`` (heavy-tailed
    work); each task is the mean times ``LogNormal(0, task_skew)`` (``task_skew=0`` gives
    perfectly parallel stages). A stage is network-heavy with probability ``network_mix``
    (network share U(0.6, 0.9) of its task time) else compute-heavy (share U(0.05, 0.3)); of the
    rest 90% is compute and 10% write. Defaults give about 950 executor-seconds per job, as in
    Decima's TPC-H set.

    ``mode="batch"``: all jobs arrive at 0. ``mode="online"``: Poisson arrivals whose rate makes
    the offered load ``load = rate * mean job work / num_executors`` (work at full bandwidth,
    without delays, of the drawn jobs); ``load`` may be a ``(low, high)`` range drawn uniformly
    per workload. The first job arrives at 0.
    """

    num_jobs: int = 50
    mode: str = "online"
    load: float | tuple[float, float] = 0.85
    num_executors: int = 50
    network_mix: float = 0.5
    min_stages: int = 2
    max_stages: int = 20
    median_stages: float = 7.0
    median_tasks: float = 40.0
    max_tasks: int = 200
    median_task_s: float = 1.6
    task_skew: float = 0.25

    def __post_init__(self) -> None:
        if self.mode not in ("online", "batch"):
            raise ValueError(f"TPCHLikeGenerator: mode must be 'online' or 'batch', got "
                             f"{self.mode!r}")
        if self.num_jobs < 1:
            raise ValueError(f"TPCHLikeGenerator: num_jobs must be >= 1, got {self.num_jobs}")
        if not 0.0 <= self.network_mix <= 1.0:
            raise ValueError(f"TPCHLikeGenerator: network_mix must be in [0, 1], got "
                             f"{self.network_mix}")
        if isinstance(self.load, list):
            self.load = tuple(self.load)

    def job(self, rng: np.random.Generator, name: str, arrival_s: float = 0.0) -> Job:
        num_stages = int(np.clip(round(rng.lognormal(np.log(self.median_stages), 0.45)),
                                 self.min_stages, self.max_stages))
        parents = _in_tree_parents(num_stages, rng)
        tasks = np.clip(np.round(rng.lognormal(np.log(self.median_tasks), 1.0, num_stages)),
                        1, self.max_tasks).astype(int)
        mean_s = rng.lognormal(np.log(self.median_task_s), 0.8, num_stages)
        heavy = rng.random(num_stages) < self.network_mix
        share = np.where(heavy, rng.uniform(0.6, 0.9, num_stages), rng.uniform(0.05, 0.3, num_stages))
        stages = []
        for k in range(num_stages):
            duration = mean_s[k] * rng.lognormal(0.0, self.task_skew, tasks[k]) if self.task_skew \
                else np.full(tasks[k], mean_s[k])
            rest = duration * (1 - share[k])
            stages.append(Stage(id=k, parents=parents[k], num_tasks=int(tasks[k]),
                                network_s=duration * share[k], compute_s=0.9 * rest,
                                write_s=0.1 * rest, job_name=name))
        return Job(name=name, arrival_s=arrival_s, stages=stages)

    def __call__(self, rng: np.random.Generator) -> list[Job]:
        jobs = [self.job(rng, f"job{i}") for i in range(self.num_jobs)]
        if self.mode == "batch":
            return jobs
        load = self.load if np.isscalar(self.load) else rng.uniform(*self.load)
        mean_work = float(np.mean([job.work_s for job in jobs]))
        interarrival = mean_work / (float(load) * self.num_executors)
        gaps = rng.exponential(interarrival, self.num_jobs)
        arrivals = np.concatenate([[0.0], np.cumsum(gaps[1:])])
        return [job.with_arrival(float(t)) for job, t in zip(jobs, arrivals, strict=True)]


@dataclass
class TraceSequenceGenerator(Generator):
    """Job sequences from traced query templates, as decima-sim and spark-sched-sim draw them.

    ``num_jobs`` jobs, each a uniformly drawn template (e.g. :func:`load_decima_tpch` or a
    real-Spark trace), named ``"<template name>#<k>"``; the first arrives at 0, the next after
    exponential gaps of mean ``mean_interarrival_s`` (decima-sim: 25 s), rounded down to whole
    milliseconds as decima-sim does. With ``mean_interarrival_s=0`` all arrive at 0 (batch).
    """

    templates: list[Job]
    num_jobs: int = 200
    mean_interarrival_s: float = 25.0

    def __post_init__(self) -> None:
        if not self.templates:
            raise ValueError("TraceSequenceGenerator: no templates")
        if self.num_jobs < 1 or self.mean_interarrival_s < 0:
            raise ValueError(f"TraceSequenceGenerator: num_jobs must be >= 1 and "
                             f"mean_interarrival_s >= 0, got {self.num_jobs}, "
                             f"{self.mean_interarrival_s}")

    def __call__(self, rng: np.random.Generator) -> list[Job]:
        picks = rng.integers(len(self.templates), size=self.num_jobs)
        gaps_ms = np.floor(rng.exponential(self.mean_interarrival_s * 1000.0, self.num_jobs))
        gaps_ms[0] = 0.0
        arrivals_s = np.cumsum(gaps_ms) / 1000.0
        return [self.templates[p].with_arrival(float(t), name=f"{self.templates[p].name}#{k}")
                for k, (p, t) in enumerate(zip(picks.tolist(), arrivals_s, strict=True))]


@dataclass
class ToyGenerator(Generator):
    """One job, one compute-only stage of ``waves * num_executors`` tasks of ``task_s`` each.

    With moving delay ``m`` (leaving the pool) and warm-up ``w`` the optimal makespan (and JCT)
    is ``m + w + waves * task_s``: every executor moves once, pays one warm-up and runs
    ``waves`` tasks; fair, FIFO and every work-conserving scheduler that grants all executors
    reach it.
    """

    num_executors: int = 4
    waves: int = 3
    task_s: float = 2.0

    def __call__(self, rng: np.random.Generator) -> list[Job]:
        stage = Stage(id=0, parents=(), num_tasks=self.waves * self.num_executors,
                      compute_s=self.task_s)
        return [Job(name="toy", arrival_s=0.0, stages=[stage])]

    def optimal_makespan_s(self, warmup_s: float, moving_delay_s: float = 0.0) -> float:
        return moving_delay_s + warmup_s + self.waves * self.task_s
