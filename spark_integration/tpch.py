"""TPC-H data on disk: generated once with ``tpchgen-cli`` as parquet, then reused.

Data for scale factor ``sf`` lives in ``<root>/sf<sf>/<table>/<table>.<part>.parquet``; a
``_COMPLETE`` marker is written only after every table is generated, so an interrupted run is
regenerated instead of being read half-written.

The root is a local directory (default ``.cache/tpch``) or any Hadoop filesystem URI
(``file://``, ``hdfs://``, ``s3a://``...). A local root is filled before any JVM starts; a
remote one is filled once through the session's Hadoop ``FileSystem`` from the local copy
(written to ``sf<sf>.tmp``, then renamed) and reused by every later run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

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


def is_local(root: str | Path) -> bool:
    """Whether ``root`` is a local path or a ``file:`` URI."""
    scheme = urlparse(str(root)).scheme
    return scheme in ("", "file") or len(scheme) == 1  # a Windows drive letter is no scheme


def local_root(root: str | Path) -> Path:
    text = str(root)
    return Path(urlparse(text).path) if text.startswith("file:") else Path(text)


def root_problem(root: str | Path | None) -> str | None:
    """What is wrong with a ``--data`` root before any JVM starts (a remote root is checked
    when it is first used), or None; the default root is created when missing."""
    if root is None or not is_local(root):
        return None
    path = local_root(root)
    if not path.is_dir():
        return f"--data: {root} does not exist (or is not a directory)"
    if not os.access(path, os.W_OK) and not (path / "_COMPLETE").exists():
        return f"--data: {root} is not writable"
    return None


def table_paths(data_dir: str | Path) -> dict[str, str]:
    """Table name -> parquet directory (local data as absolute paths, so executors started in
    other directories, other namespaces or other machines sharing the mount read the same)."""
    if not is_local(data_dir):
        base = str(data_dir).rstrip("/")
        return {table: f"{base}/{table}" for table in TABLES}
    data_dir = local_root(data_dir).resolve()
    if not (data_dir / _MARKER).exists():
        raise FileNotFoundError(f"{data_dir} is not a complete TPC-H directory (no {_MARKER})")
    return {table: str(data_dir / table) for table in TABLES}


def ensure_remote_tpch(spark, scale_factor: float, root: str,
                       cache_dir: str | Path = DEFAULT_CACHE_DIR) -> str:
    """``<root>/sf<sf>`` on the Hadoop filesystem of ``root``, copied there once from the local
    copy (generated first if needed); returns its URI."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop_path = jvm.org.apache.hadoop.fs.Path
    uri = f"{str(root).rstrip('/')}/{scale_label(scale_factor)}"
    target = hadoop_path(uri)
    filesystem = target.getFileSystem(conf)
    if filesystem.exists(hadoop_path(target, _MARKER)):
        return uri
    source = ensure_tpch(scale_factor, cache_dir).resolve()
    staging = hadoop_path(uri + ".tmp")
    for stale in (staging, target):
        if filesystem.exists(stale):
            filesystem.delete(stale, True)
    local = jvm.org.apache.hadoop.fs.FileSystem.getLocal(conf)
    if not jvm.org.apache.hadoop.fs.FileUtil.copy(local, hadoop_path(source.as_uri()),
                                                  filesystem, staging, False, conf):
        raise OSError(f"copying {source} to {uri}.tmp failed")
    if not filesystem.rename(staging, target):
        raise OSError(f"renaming {uri}.tmp to {uri} failed")
    return uri


def data_location(scale_factor: float, root: str | Path | None = None, spark=None) -> str:
    """Where the tables at ``scale_factor`` are: under a local ``root`` (generated now if
    missing) or a remote one (needs the running ``spark``; copied there once)."""
    root = DEFAULT_CACHE_DIR if root is None else root
    if is_local(root):
        return str(ensure_tpch(scale_factor, local_root(root)).resolve())
    if spark is None:
        raise ValueError(f"data root {root} is remote: it is filled through a running session")
    return ensure_remote_tpch(spark, scale_factor, str(root))
