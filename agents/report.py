"""Report artefacts for offloading comparisons: rich table, markdown, ratio plot, Gantt chart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.report import markdown_table
from envs.offload.render import save_figure

RATIO_COLUMNS = ["group", "scheduler", "instances", "reference", "mean_ratio", "p95_ratio",
                 "max_ratio", "median_plan_ms"]


def print_ratio_table(rows: Sequence[dict], title: str, console: Console | None = None) -> None:
    table = Table(title=title)
    for column in RATIO_COLUMNS:
        table.add_column(column, justify="left" if column in ("group", "scheduler") else "right")
    for row in rows:
        table.add_row(*(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c])
                        for c in RATIO_COLUMNS))
    (console or Console()).print(table)


def ratio_markdown(rows: Sequence[dict]) -> str:
    return markdown_table(rows, RATIO_COLUMNS)


def plot_ratios(rows: Sequence[dict], path: str | Path, title: str) -> Path:
    """Bar chart of mean makespan / reference per scheduler (p95 as the error bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["scheduler"] for row in rows]
    means = [row["mean_ratio"] for row in rows]
    upper = [row["p95_ratio"] - row["mean_ratio"] for row in rows]
    figure, axis = plt.subplots(figsize=(1.0 + 0.9 * len(rows), 3.6))
    axis.bar(names, means, yerr=[[0] * len(rows), upper], capsize=3, color="tab:blue")
    axis.axhline(1.0, color="black", linewidth=0.8)
    axis.set_ylabel(f"makespan / {rows[0]['reference']} (mean, p95 bar)")
    axis.set_yscale("log")
    axis.set_title(title, fontsize=10)
    axis.tick_params(axis="x", rotation=30)
    return save_figure(figure, path)
