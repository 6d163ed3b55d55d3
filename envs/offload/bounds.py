"""A cheap lower bound on the makespan, used by the env to put times on one scale."""

from __future__ import annotations

from envs.offload.instance import OffloadInstance


def latency_lower_bound(instance: OffloadInstance) -> float:
    """``max(longest best latency, total best latency / 3)``.

    Every job needs at least its best ``D + U + S``; the three resources together carry at
    least the sum of those, so the busiest carries a third of it. The LP bound in
    :func:`heuristics.offload.lower_bound` is tighter and slower.
    """
    best = [float((device + upload + server).min())
            for device, upload, server in (instance.cut_times(j) for j in range(instance.num_jobs))]
    return max(max(best), sum(best) / 3.0)
