"""Gantt charts of an offloading schedule: text (``ansi``) and matplotlib PNG."""

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


def plot_gantt(instance: OffloadInstance, results: dict[str, SimulationResult],
               path: str | Path) -> Path:
    """PNG with one panel per scheduler: device, uplink and server busy intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab20")
    horizon_s = max(result.makespan_s for result in results.values())
    figure, axes = plt.subplots(len(results), 1, figsize=(10, 1.6 * len(results) + 0.6),
                                sharex=True, squeeze=False)
    for axis, (name, result) in zip(axes[:, 0], results.items(), strict=True):
        for row, resource in enumerate(RESOURCES):
            for interval in result.intervals[resource]:
                axis.barh(row, interval.end_s - interval.start_s, left=interval.start_s,
                          color=colors(interval.job % 20), edgecolor="black", linewidth=0.4)
        axis.set_yticks(range(len(RESOURCES)), RESOURCES)
        axis.invert_yaxis()
        axis.set_xlim(0, horizon_s * 1.02)
        axis.set_title(f"{name}: makespan {result.makespan_s:.3f} s", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    return save_figure(figure, path)


def save_figure(figure, path: str | Path) -> Path:  # noqa: ANN001  (a matplotlib Figure)
    """Write ``figure`` as a PNG (creating the folder) and close it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
