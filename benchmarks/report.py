"""Shared writer for benchmark results: ``DIR/<name>.json`` and ``DIR/<name>.md``.

The JSON schema is fixed by the design: ``command``, ``machine``, ``rows`` (one dict per
measured cell) and ``targets`` (``{name: {value, threshold, op, met}}``; a target that is not
met for a reason other than its value, or has no value, also carries ``reason``). What a
benchmark could not measure is printed as one ``MISSING ...`` line each and listed under
``"missing"`` (:class:`Missing`).
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from agents.report import markdown_table
from envs.machine import cpu_model

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
        "abs(value-1) <=": lambda value, threshold: abs(value - 1.0) <= threshold}


def machine_info() -> dict[str, Any]:
    import numpy

    info: dict[str, Any] = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "platform": platform.platform(), "numpy": numpy.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% t-interval half-width."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float(values.mean()), float("nan")
    half = stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return float(values.mean()), float(half)


def median_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Median and its distribution-free 95% interval (order statistics of the binomial): at
    least 95% coverage for any distribution; the whole range for 6 values or fewer."""
    from scipy import stats

    ordered = np.sort(np.asarray(values, dtype=float))
    if ordered.size == 0:
        return math.nan, math.nan, math.nan
    below = int(stats.binom.ppf(0.025, ordered.size, 0.5))  # values that may lie below
    low = ordered[max(below - 1, 0)]
    high = ordered[min(ordered.size - below, ordered.size - 1)]
    return float(np.median(ordered)), float(low), float(high)


def target(value: float | None, threshold: float, op: str,
           reason: str | None = None) -> dict[str, Any]:
    """One target entry; ``met`` is ``value <op> threshold``. A target with a ``reason`` (rows
    that failed, data that is missing) is not met whatever its value, and one without a value
    (``None`` or NaN) is not met either: no data never passes."""
    if op not in _OPS:
        raise ValueError(f"target op {op!r}: not one of {sorted(_OPS)}")
    if reason is None and (value is None or math.isnan(value)):
        reason = "no data"
    entry: dict[str, Any] = {"value": None if value is None else float(value),
                             "threshold": float(threshold), "op": op,
                             "met": reason is None and bool(_OPS[op](value, threshold))}
    if reason is not None:
        entry["reason"] = reason
    return entry


def failed_rows_reason(failed: int, total: int) -> str | None:
    """``"k of n rows failed"`` when any did, else ``None`` (for :func:`target`)."""
    return f"{failed} of {total} rows failed" if failed else None


class Missing:
    """What a benchmark could not measure: each entry printed at once as one ``MISSING
    what: reason`` line and kept for the JSON (``"missing": entries``)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, str]] = []

    def add(self, what: str, reason: str) -> None:
        print(f"MISSING {what}: {reason}", file=sys.stderr, flush=True)
        self.entries.append({"what": what, "reason": reason})


def parse_args(name: str, argv: Sequence[str] | None = None,
               extra: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    parser = extra or argparse.ArgumentParser(prog=f"python -m benchmarks.{name}")
    parser.add_argument("--quick", action="store_true", help="fewer instances, same schema")
    parser.add_argument("--out", default="results", help="output directory")
    return parser.parse_args(argv)


def targets_table(targets: dict[str, dict[str, Any]]) -> str:
    rows = [{"target": k, "value": v["value"], "op": v["op"], "threshold": v["threshold"],
             "met": "yes" if v["met"] else "**no**", "reason": v.get("reason", "")}
            for k, v in targets.items()]
    return markdown_table(rows, ["target", "value", "op", "threshold", "met", "reason"])


def print_targets(targets: dict[str, dict[str, Any]]) -> None:
    """One line per target: value, comparison, threshold, met or MISSED (with its reason)."""
    for name, entry in targets.items():
        value = "none" if entry["value"] is None else f"{entry['value']:.4g}"
        reason = f" ({entry['reason']})" if entry.get("reason") else ""
        print(f"  {name}: {value} {entry['op']} {entry['threshold']} -> "
              f"{'met' if entry['met'] else 'MISSED'}{reason}")


def write_report(name: str, out_dir: str | Path, rows: list[dict[str, Any]],
                 targets: dict[str, dict[str, Any]], markdown_body: str,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write ``<name>.json`` and ``<name>.md`` and return the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks." + name + "".join(" " + a for a in sys.argv[1:])
    payload = {"command": command, "machine": machine_info(), "rows": rows, "targets": targets}
    if extra:
        payload.update(extra)
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(payload, indent=2))
    md = [f"# {name}", "", f"`{command}` on {payload['machine']['cpu']} "
          f"({payload['machine']['cores']} cores), {payload['machine']['date']}", "",
          markdown_body, "", "## Targets", "", targets_table(targets), ""]
    (out / f"{name}.md").write_text("\n".join(md))
    return json_path
