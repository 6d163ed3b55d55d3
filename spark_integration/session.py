"""SparkSession construction with the FAIR pool ladder the DagExecutor launches nodes into.

Spark fixes a pool's ``minShare`` and ``weight`` in the allocation XML read when the
SparkContext starts, so every parallelism level a scheduler may choose is pre-declared: for
level ``k`` there are ``max_executors // k`` pools named ``pipesched_k<k>_<slot>``, each with
``minShare = k``. Giving every running node its own pool keeps two nodes of the same level from
queueing behind each other inside one FIFO pool.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyspark.sql import SparkSession

POOL_PREFIX = "pipesched_k"
# C1-only JIT and the serial GC: far less CPU for short runs (tests, daemons) on few cores,
# slower steady-state code for long scans.
LEAN_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
DEFAULT_CONF_DIR = Path(".cache/spark")


def pool_name(level: int, slot: int) -> str:
    return f"{POOL_PREFIX}{level}_{slot}"


def pool_ladder(levels: Sequence[int], max_executors: int) -> dict[int, list[str]]:
    """Parallelism level -> names of the pools declared for it."""
    if max_executors < 1:
        raise ValueError(f"max_executors must be >= 1, got {max_executors}")
    ladder: dict[int, list[str]] = {}
    for level in sorted({int(v) for v in levels}):
        if level < 1:
            raise ValueError(f"pool levels must be >= 1, got {level}")
        if level <= max_executors:
            ladder[level] = [pool_name(level, s) for s in range(max_executors // level)]
    if not ladder:
        raise ValueError(f"no pool level in {list(levels)} fits {max_executors} executors")
    return ladder


def allocation_xml(ladder: Mapping[int, Sequence[str]]) -> str:
    root = ET.Element("allocations")
    for level, names in sorted(ladder.items()):
        for name in names:
            pool = ET.SubElement(root, "pool", name=name)
            ET.SubElement(pool, "schedulingMode").text = "FIFO"
            ET.SubElement(pool, "weight").text = "1"
            ET.SubElement(pool, "minShare").text = str(level)
    ET.indent(root)
    return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_allocation_file(ladder: Mapping[int, Sequence[str]],
                          conf_dir: str | Path = DEFAULT_CONF_DIR) -> Path:
    text = allocation_xml(ladder)
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    path = Path(conf_dir).resolve() / f"fairscheduler-{digest}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(text)
    return path


def read_allocation_file(path: str | Path) -> dict[int, list[str]]:
    """Parse a ladder back from an allocation XML (pools not named by :func:`pool_name` are
    ignored)."""
    ladder: dict[int, list[str]] = {}
    for pool in ET.parse(path).getroot().iter("pool"):
        match = re.fullmatch(rf"{POOL_PREFIX}(\d+)_(\d+)", pool.get("name", ""))
        if match:
            ladder.setdefault(int(match.group(1)), []).append(pool.get("name"))
    return ladder


def executors_of_master(master: str) -> int | None:
    """Task slots implied by a ``local[N]`` master; ``None`` for cluster masters."""
    match = re.fullmatch(r"local\[(\d+)(?:,\s*\d+)?\]", master)
    if match:
        return int(match.group(1))
    if master == "local":
        return 1
    return None


def build_session(master: str = "local[2]", app_name: str = "pipesched",
                  scheduler_mode: str = "FAIR", pool_levels: Sequence[int] = (1, 2),
                  max_executors: int | None = None, event_log_dir: str | Path | None = None,
                  shuffle_partitions: int = 4, lean_jvm: bool = False,
                  conf: Mapping[str, str] | None = None) -> SparkSession:
    """Start (or return the running) SparkSession configured for pipesched.

    ``scheduler_mode`` is ``"FAIR"`` (with the pool ladder for ``pool_levels``) or ``"FIFO"``.
    ``max_executors`` defaults to N of ``local[N]``; give it for cluster masters.
    ``lean_jvm`` starts the driver and executor JVMs with :data:`LEAN_JVM_OPTIONS`.
    """
    mode = scheduler_mode.upper()
    if mode not in ("FAIR", "FIFO"):
        raise ValueError(f"scheduler_mode must be FAIR or FIFO, got {scheduler_mode!r}")
    builder = (SparkSession.builder.master(master).appName(app_name)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
               .config("spark.scheduler.mode", mode)
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1"))
    if mode == "FAIR":
        slots = max_executors or executors_of_master(master)
        if slots is None:
            raise ValueError(f"max_executors is needed for master {master!r}")
        path = write_allocation_file(pool_ladder(pool_levels, slots))
        builder = builder.config("spark.scheduler.allocation.file", str(path))
    if event_log_dir is not None:
        log_dir = Path(event_log_dir).resolve()
        log_dir.mkdir(parents=True, exist_ok=True)
        builder = (builder.config("spark.eventLog.enabled", "true")
                   .config("spark.eventLog.dir", log_dir.as_uri()))
    if lean_jvm:
        builder = (builder.config("spark.driver.extraJavaOptions", LEAN_JVM_OPTIONS)
                   .config("spark.executor.extraJavaOptions", LEAN_JVM_OPTIONS))
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def wait_for_executors(spark: SparkSession, count: int, timeout_s: float = 120.0) -> int:
    """Block until ``count`` executors (besides the driver) have registered; returns how many."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        registered = len(spark.sparkContext.statusTracker().getExecutorInfos()) - 1
        if registered >= count:
            return registered
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {registered} of {count} executors registered with "
                               f"{spark.sparkContext.master} within {timeout_s:.0f} s")
        time.sleep(0.5)
