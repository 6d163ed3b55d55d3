"""``python -m benchmarks [--quick] [--out DIR]``: run every benchmark that is present.

A benchmark that fails (an exception, or ``SystemExit`` with a nonzero code such as a
missing model's one-line refusal) is recorded and the later ones still run; the summary
lists each failure in one line and the exit code is 1 if any failed. ``KeyboardInterrupt``
stops everything.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence

ORDER = ["offload", "offload_dag", "offload_live", "spark_dag", "spark_live_room",
         "spark_reference", "spark_real", "spark_sql", "param_server", "ps_real", "hetero_pipeline",
         "pipeline_real", "runner"]


def run_one(module_name: str, argv: Sequence[str]) -> str | None:
    """Import ``module_name`` and run its ``main(argv)``; the reason it failed, or ``None``."""
    try:
        importlib.import_module(module_name).main(list(argv))
    except SystemExit as stop:
        if stop.code in (None, 0):
            return None
        return f"exit {stop.code}" if isinstance(stop.code, int) else str(stop.code)
    except Exception as error:  # deliberate: one failing benchmark must not hide the others
        return f"{type(error).__name__}: {error}"
    return None


def run_all(module_names: Sequence[str], argv: Sequence[str]) -> list[tuple[str, str]]:
    """Run each benchmark module in order; ``(module, reason)`` for each that failed."""
    failed = []
    for name in module_names:
        print(f"== {name}", flush=True)
        reason = run_one(name, argv)
        if reason is not None:
            first_line = (reason.strip().splitlines() or [""])[0]
            print(f"{name} failed: {first_line}", file=sys.stderr, flush=True)
            failed.append((name, first_line))
    return failed


def main(argv: Sequence[str] | None = None, modules: Sequence[str] | None = None) -> int:
    """Run ``modules`` (default: each benchmark of :data:`ORDER` that is present) with
    ``argv``; print one ``FAILED`` line per failure; 1 if any failed."""
    present = list(modules) if modules is not None else [
        f"benchmarks.{name}" for name in ORDER
        if importlib.util.find_spec(f"benchmarks.{name}") is not None]
    failed = run_all(present, sys.argv[1:] if argv is None else argv)
    if failed:
        print(f"{len(failed)} of {len(present)} benchmarks failed:", file=sys.stderr)
        for name, reason in failed:
            print(f"FAILED {name}: {reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
