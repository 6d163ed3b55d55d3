"""Text Gantt chart of an offloading schedule (``ansi``; the PNG charts are :mod:`agents.gantt`),
and the figure writer the reports share."""

from __future__ import annotations

from pathlib import Path

from envs.offload.instance import OffloadInstance
from envs.offload.simulator import RESOURCES, SimulationResult

_SYMBOLS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def ansi_gantt(instance: OffloadInstance, result: SimulationResult, width: int = 72) -> str:
    """One row per resource; each column is ``makespan / width`` seconds; the symbol is the job."""
    horizon_s = max(result.makespan_s, 1e-12)
    lines = [f"makespan {result.makespan_s:.4f} s, {len(result.job_done_s)}/{instance.num_jobs} "
             f"jobs, {instance.bandwidth_mbps:.2f} Mbit/s"]
    for resource in RESOURCES:
        row = ["."] * width
        for interval in result.intervals[resource]:
            first = int(interval.start_s / horizon_s * width)
            last = max(first + 1, int(round(interval.end_s / horizon_s * width)))
            for column in range(first, min(last, width)):
                row[column] = _SYMBOLS[interval.job % len(_SYMBOLS)]
        lines.append(f"{resource:>6} |{''.join(row)}|")
    legend = ", ".join(f"{_SYMBOLS[j % len(_SYMBOLS)]}={job.name}"
                       for j, job in enumerate(instance.jobs))
    lines.append("jobs: " + legend)
    return "\n".join(lines) + "\n"


def save_figure(figure, path: str | Path) -> Path:  # noqa: ANN001  (a matplotlib Figure)
    """Write ``figure`` as a PNG (creating the folder) and close it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
