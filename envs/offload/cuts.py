"""Candidate cuts: the Pareto-efficient ones in (device, upload, server) time.

Makespan never decreases when one job's device, upload or server time grows (the plan order
fixed), so a cut dominated in all three by another cut of the same job is never needed for an
optimal plan. Dropping them shrinks the action space and the exact search.
"""

from __future__ import annotations

import numpy as np

from envs.offload.instance import OffloadInstance


def pareto_cuts(device_s: np.ndarray, upload_s: np.ndarray, server_s: np.ndarray) -> np.ndarray:
    """Indices of the cuts not dominated by another cut (of equal cuts, the smallest index)."""
    times = np.stack([device_s, upload_s, server_s], axis=1)
    no_worse = np.all(times[:, None, :] <= times[None, :, :] + 1e-12, axis=2)  # [other, cut]
    better = np.any(times[:, None, :] < times[None, :, :] - 1e-12, axis=2)
    earlier_equal = np.triu(no_worse & ~better, k=1)  # an identical cut with a smaller index
    dominated = np.any(no_worse & better, axis=0) | np.any(earlier_equal, axis=0)
    return np.flatnonzero(~dominated)


def candidate_cuts(instance: OffloadInstance, job: int, max_cuts: int | None = None) -> np.ndarray:
    """Pareto cuts of ``job``; when more than ``max_cuts``, an even spread that keeps both ends."""
    cuts = pareto_cuts(*instance.cut_times(job))
    if max_cuts is not None and len(cuts) > max_cuts:
        picks = np.unique(np.round(np.linspace(0, len(cuts) - 1, max_cuts)).astype(int))
        cuts = cuts[picks]
    return cuts
