"""TPC-H data on disk: generated once with ``tpchgen-cli`` as parquet, then reused.

Data for scale factor ``sf`` lives in ``<cache_dir>/sf<sf>/<table>/<table>.<part>.parquet``;
a ``_COMPLETE`` marker is written only after every table is generated, so an interrupted run
is regenerated instead of being read half-written.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

TABLES = ("region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem")
DEFAULT_CACHE_DIR = Path(".cache/tpch")
_MARKER = "_COMPLETE"


def scale_label(scale_factor: float) -> str:
    """``0.1 -> "sf0.1"``, ``1 -> "sf1"``."""
    return "sf" + format(scale_factor, "g")


def parts_for(scale_factor: float) -> int:
    """Files per table: enough that a lineitem scan splits into several tasks."""
    return max(2, round(8 * scale_factor))


def _tpchgen_executable() -> str:
    local = Path(sys.executable).with_name("tpchgen-cli")
    if local.exists():
        return str(local)
    found = shutil.which("tpchgen-cli")
    if found is None:
        raise FileNotFoundError("tpchgen-cli not found: install it with `pip install tpchgen-cli`")
    return found


def ensure_tpch(scale_factor: float, cache_dir: str | Path = DEFAULT_CACHE_DIR) -> Path:
    """Return the directory holding TPC-H parquet tables at ``scale_factor``, generating it
    with ``tpchgen-cli`` if it is missing or incomplete."""
    if scale_factor <= 0:
        raise ValueError(f"TPC-H scale factor must be positive, got {scale_factor}")
    out = Path(cache_dir) / scale_label(scale_factor)
    if (out / _MARKER).exists():
        return out
    if out.exists():
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    command = [_tpchgen_executable(), "parquet", "-s", format(scale_factor, "g"),
               "--parts", str(parts_for(scale_factor)), "-o", str(tmp), "-q"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"tpchgen-cli failed ({' '.join(command)}): {result.stderr.strip()}")
    missing = [t for t in TABLES if not (tmp / t).exists()]
    if missing:
        raise RuntimeError(f"tpchgen-cli wrote no data for tables {missing} in {tmp}")
    (tmp / _MARKER).write_text(format(scale_factor, "g") + "\n")
    tmp.rename(out)
    return out


def table_paths(data_dir: str | Path) -> dict[str, str]:
    """Table name -> parquet directory."""
    data_dir = Path(data_dir)
    if not (data_dir / _MARKER).exists():
        raise FileNotFoundError(f"{data_dir} is not a complete TPC-H directory (no {_MARKER})")
    return {table: str(data_dir / table) for table in TABLES}
