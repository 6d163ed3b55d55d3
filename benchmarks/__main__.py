"""``python -m benchmarks [--quick] [--out DIR]``: run every benchmark that is present."""

from __future__ import annotations

import importlib
import importlib.util
import sys

ORDER = ["offload", "offload_dag", "offload_live", "spark_dag", "spark_live_room",
         "spark_reference", "spark_real", "param_server", "ps_real", "hetero_pipeline",
         "pipeline_real", "runner"]


def main() -> int:
    failed = []
    for name in ORDER:
        if importlib.util.find_spec(f"benchmarks.{name}") is None:
            continue
        print(f"== benchmarks.{name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        try:
            module.main(sys.argv[1:])
        except Exception as error:  # one failing benchmark must not hide the others
            print(f"benchmarks.{name} failed: {error!r}", file=sys.stderr)
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
