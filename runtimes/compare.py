"""Measured against simulated: relative errors and whether the simulator's plan order holds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import kendalltau


def relative_errors(measured: Sequence[float], simulated: Sequence[float]) -> np.ndarray:
    """``|measured / simulated - 1|`` element-wise."""
    return np.abs(np.asarray(measured, float) / np.asarray(simulated, float) - 1.0)


def ranking_kept(measured: Sequence[float], simulated: Sequence[float],
                 margin: float = 0.10) -> tuple[int, int]:
    """``(kept, pairs)`` over the pairs whose simulated times differ by more than ``margin``
    (relative): ``kept`` of them are ordered the same way by the measurement."""
    kept = pairs = 0
    for i, (real_i, sim_i) in enumerate(zip(measured, simulated, strict=True)):
        for real_j, sim_j in zip(measured[i + 1:], simulated[i + 1:], strict=True):
            if abs(sim_i - sim_j) > margin * min(sim_i, sim_j):
                pairs += 1
                kept += (real_i < real_j) == (sim_i < sim_j)
    return kept, pairs


def kendall_tau(measured: Sequence[float], simulated: Sequence[float]) -> float:
    return float(kendalltau(measured, simulated).statistic)
