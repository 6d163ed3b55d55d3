"""Report artefacts for comparisons: rich table, markdown, ratio plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from envs.offload.render import save_figure

RATIO_COLUMNS = ["group", "scheduler", "instances", "failed", "reference", "mean_ratio",
                 "p95_ratio", "max_ratio", "median_plan_ms"]


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str],
                   floatfmt: str = ".3f") -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return format(value, floatfmt)
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


SHORT_HEADERS = {"instances": "n", "mean_ratio": "mean", "p95_ratio": "p95",
                 "max_ratio": "max", "median_plan_ms": "plan ms"}


def print_ratio_table(rows: Sequence[dict], title: str, console: Console | None = None) -> None:
    """The ratios as a rich table that fits 80 columns: a column holding one value for every
    row (the group, the reference) moves into the title, scheduler names never wrap."""
    constant = [c for c in ("group", "reference") if len({row[c] for row in rows}) == 1]
    columns = [c for c in RATIO_COLUMNS if c not in constant]
    if "reference" in constant:
        title += f" (ratios to {rows[0]['reference']})"
    table = Table(title=title)
    for column in columns:
        table.add_column(SHORT_HEADERS.get(column, column), no_wrap=column == "scheduler",
                         justify="left" if column in ("group", "scheduler") else "right")
    for row in rows:
        table.add_row(*(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c])
                        for c in columns))
    (console or Console()).print(table)


def ratio_markdown(rows: Sequence[dict]) -> str:
    return markdown_table(rows, RATIO_COLUMNS)


def plot_ratios(rows: Sequence[dict], path: str | Path, title: str,
                objective: str = "makespan") -> Path:
    """Bar chart of mean objective / reference per scheduler (p95 as the error bar); a
    scheduler that failed an instance has no bar, only a ``failed N/M`` label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["scheduler"] for row in rows]
    failed = [row["failed"] > 0 for row in rows]
    means = [0.0 if fail else row["mean_ratio"] for row, fail in zip(rows, failed, strict=True)]
    upper = [0.0 if fail else row["p95_ratio"] - row["mean_ratio"]
             for row, fail in zip(rows, failed, strict=True)]
    figure, axis = plt.subplots(figsize=(1.0 + 0.9 * len(rows), 3.6))
    axis.bar(names, means, yerr=[[0] * len(rows), upper], capsize=3, color="tab:blue")
    for index, row in enumerate(rows):
        if failed[index]:
            axis.text(index, 1.0, f"failed {row['failed']}/{row['instances']}", rotation=90,
                      ha="center", va="bottom", color="tab:red", fontsize=8)
    axis.axhline(1.0, color="black", linewidth=0.8)
    axis.set_ylabel(f"{objective} / {rows[0]['reference']} (mean, p95 bar)")
    axis.set_yscale("log")
    axis.set_title(title, fontsize=10)
    axis.tick_params(axis="x", rotation=30)
    return save_figure(figure, path)
