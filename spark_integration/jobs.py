"""Streams of TPC-H query jobs for the live executor: which query, named how, arriving when."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spark_integration.queries import QUERIES, QueryDag


@dataclass(frozen=True)
class JobSpec:
    """One job of a live run: query DAG ``dag`` arriving ``arrival_s`` after the run starts."""

    name: str
    dag: QueryDag
    arrival_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.arrival_s >= 0:
            raise ValueError(f"job {self.name!r}: arrival_s must be >= 0, got {self.arrival_s}")
        if "|" in self.name or "," in self.name:
            raise ValueError(f"job {self.name!r}: name may not contain '|' or ','")


def resolve_queries(names: Sequence[str]) -> list[QueryDag]:
    unknown = [n for n in names if n not in QUERIES]
    if unknown:
        raise ValueError(f"unknown TPC-H queries {unknown}; known: {sorted(QUERIES)}")
    return [QUERIES[n] for n in names]


def batch(queries: Sequence[str]) -> list[JobSpec]:
    """Every query once, all arriving at time 0."""
    return [JobSpec(f"{dag.name}#{i}", dag, 0.0) for i, dag in enumerate(resolve_queries(queries))]


def poisson_arrivals(num_jobs: int, mean_interarrival_s: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Arrival times of ``num_jobs`` jobs with exponential gaps; the first arrives at 0."""
    if num_jobs < 1:
        raise ValueError(f"num_jobs must be >= 1, got {num_jobs}")
    if mean_interarrival_s < 0:
        raise ValueError(f"mean_interarrival_s must be >= 0, got {mean_interarrival_s}")
    gaps = rng.exponential(mean_interarrival_s, num_jobs) if mean_interarrival_s > 0 else \
        np.zeros(num_jobs)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def poisson_stream(queries: Sequence[str], num_jobs: int, mean_interarrival_s: float,
                   rng: np.random.Generator) -> list[JobSpec]:
    """``num_jobs`` jobs, queries drawn uniformly from ``queries``, exponential gaps; the first
    job arrives at 0."""
    dags = resolve_queries(queries)
    arrivals = poisson_arrivals(num_jobs, mean_interarrival_s, rng)
    picks = rng.integers(0, len(dags), num_jobs)
    return [JobSpec(f"{dags[p].name}#{i}", dags[p], float(round(a, 3)))
            for i, (p, a) in enumerate(zip(picks, arrivals, strict=True))]
