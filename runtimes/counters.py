"""Byte counters of a node's link around torch.distributed work.

A node reads its eth0 counters (:func:`runtimes.netns.read_counters`) after a barrier that
starts a measured window and after one that ends it: when the closing barrier returns, every
message of the window has arrived, so it has also left its sender (a sender's last bytes may
still sit in its queue when its own work is done). The closing barrier's own frames are then
inside the window; :func:`barrier_bytes` measures them on the same link, and
:class:`Window` takes them off.
"""

from __future__ import annotations

import numpy as np
import torch.distributed as dist

from runtimes.netns import read_counters


def barrier_bytes(samples: int = 5) -> tuple[float, float]:
    """``(tx, rx)`` bytes this node's link carries for one barrier (median of ``samples``)."""
    dist.barrier()
    deltas = []
    for _ in range(samples):
        tx, rx = read_counters()
        dist.barrier()
        tx_after, rx_after = read_counters()
        deltas.append((tx_after - tx, rx_after - rx))
    tx_median, rx_median = np.median(np.array(deltas, dtype=float), axis=0)
    return float(tx_median), float(rx_median)


class Window:
    """Counters over ``open()`` .. ``close()``, less the closing barrier's own bytes."""

    def __init__(self, barrier: tuple[float, float]) -> None:
        self.barrier = barrier
        self._start = (0, 0)

    def open(self) -> None:
        self._start = read_counters()

    def close(self) -> tuple[float, float]:
        """Ends the window with a barrier; ``(tx, rx)`` bytes of the work inside it."""
        dist.barrier()
        tx, rx = read_counters()
        return (tx - self._start[0] - self.barrier[0], rx - self._start[1] - self.barrier[1])
