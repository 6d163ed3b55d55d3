"""SparkSession construction with the FAIR pool ladder the DagExecutor launches nodes into.

Spark fixes a pool's ``minShare`` and ``weight`` in the allocation XML read when the
SparkContext starts, so every parallelism level a scheduler may choose is pre-declared: for
level ``k`` there are ``max_executors // k`` pools named ``pipesched_k<k>_<slot>``, each with
``minShare = k``. Giving every running node its own pool keeps two nodes of the same level from
queueing behind each other inside one FIFO pool.

Quiet by default: the driver JVM logs through a log4j2 file at the level of
``build_session(log_level=...)`` (the CLIs' ``--log-level``), else ``PIPESCHED_SPARK_LOG_LEVEL``,
else ``WARN``. Fixed start-up notices that say nothing about this run are dropped: the JVM's
incubator-module warning (Spark's launcher always triggers it), Hadoop's missing native
library, the loopback-hostname warning (the driver's JVM gets ``SPARK_LOCAL_IP`` at its bind
address), pyspark's pandas-version warning, the per-job "pool not configured" notice of the
Spark FAIR baseline (it creates one pool per job on purpose) and the "Lost task ... TaskKilled
(Stage cancelled" line of each task of a job that was cancelled on purpose. Everything else
still reaches the terminal.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyspark.sql import SparkSession

from spark_integration.settings import (
    LOCAL,
    default_driver_conf,
    jvm_environment,
    local_slots,
    master_kind,
)

POOL_PREFIX = "pipesched_k"
# C1-only JIT and the serial GC: far less CPU for short runs (tests, daemons) on few cores,
# slower steady-state code for long scans.
LEAN_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
DEFAULT_CONF_DIR = Path(".cache/spark")
LOG_LEVEL_ENV = "PIPESCHED_SPARK_LOG_LEVEL"
DEFAULT_LOG_LEVEL = "WARN"
LOG_LEVELS = ("ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")
# Printed by the JVM itself (Spark's launcher always adds --add-modules=jdk.incubator.vector),
# so no log level reaches it.
# A task killed because its job was cancelled (Ctrl-C, a cancelled job of the PolicyScheduler) is
# what was asked for, not a failure.
_JVM_NOISE = re.compile(r"WARNING: Using incubator modules: |"
                        r".* WARN TaskSetManager: Lost task .*: TaskKilled \(Stage cancelled")


def pool_name(level: int, slot: int) -> str:
    return f"{POOL_PREFIX}{level}_{slot}"


def pool_ladder(levels: Sequence[int], max_executors: int,
                min_pools: int = 1) -> dict[int, list[str]]:
    """Parallelism level -> names of the pools declared for it: ``max_executors // level`` of
    them, at least ``min_pools`` (jobs of the PolicyScheduler outnumber the slots' share)."""
    if max_executors < 1:
        raise ValueError(f"max_executors must be >= 1, got {max_executors}")
    ladder: dict[int, list[str]] = {}
    for level in sorted({int(v) for v in levels}):
        if level < 1:
            raise ValueError(f"pool levels must be >= 1, got {level}")
        if level <= max_executors:
            ladder[level] = [pool_name(level, s)
                             for s in range(max(max_executors // level, min_pools))]
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


def declared_ladder(sc, user: str) -> dict[int, list[str]]:
    """The pool ladder a running SparkContext declared at start; ValueError naming ``user``
    (what needs it) when the session is not FAIR or declares no ladder."""
    conf = sc.getConf()
    if conf.get("spark.scheduler.mode", "FIFO").upper() != "FAIR":
        raise ValueError(f"{user} needs a SparkSession started with spark.scheduler.mode=FAIR "
                         f"(use spark_integration.build_session)")
    path = conf.get("spark.scheduler.allocation.file")
    if not path:
        raise ValueError("spark.scheduler.allocation.file is not set: the FAIR pool ladder "
                         f"({POOL_PREFIX}<level>_<slot>) must be declared at session start")
    ladder = read_allocation_file(path.removeprefix("file:"))
    if not ladder:
        raise ValueError(f"{path}: declares no {POOL_PREFIX}<level>_<slot> pools")
    return ladder


def resolve_log_level(log_level: str | None = None) -> str:
    """``log_level``, else ``$PIPESCHED_SPARK_LOG_LEVEL``, else ``WARN``; validated."""
    source = "--log-level" if log_level is not None else LOG_LEVEL_ENV
    value = log_level if log_level is not None else (os.environ.get(LOG_LEVEL_ENV)
                                                      or DEFAULT_LOG_LEVEL)
    level = value.strip().upper()
    if level == "WARNING":
        level = "WARN"
    if level not in LOG_LEVELS:
        raise ValueError(f"{source}: unknown Spark log level {value!r} "
                         f"(one of {', '.join(LOG_LEVELS)})")
    return level


def log4j_file(level: str, conf_dir: str | Path = DEFAULT_CONF_DIR) -> Path:
    """A log4j2 configuration: everything at ``level`` and above to stderr, one line each."""
    # pyspark's gateway logger at the root's level: otherwise Spark caps console output at
    # WARN and prints a "Setting default log level" notice
    text = (f"rootLogger.level = {level.lower()}\n"
            "logger.shell.name = org.apache.spark.api.python.PythonGatewayServer\n"
            f"logger.shell.level = {level.lower()}\n"
            "rootLogger.appenderRef.stderr.ref = stderr\n"
            "appender.console.type = Console\n"
            "appender.console.name = stderr\n"
            "appender.console.target = SYSTEM_ERR\n"
            "appender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex\n")
    if level == "WARN":  # start-up notices that say nothing about the run (module docstring)
        text += ("logger.native.name = org.apache.hadoop.util.NativeCodeLoader\n"
                 "logger.native.level = error\n"
                 "logger.pools.name = org.apache.spark.scheduler.FairSchedulableBuilder\n"
                 "logger.pools.level = error\n")
    path = Path(conf_dir).resolve() / f"log4j2-{level.lower()}.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _forward_jvm_stderr(stream) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        if not _JVM_NOISE.match(line):
            sys.stderr.write(line)
            sys.stderr.flush()


def _launch_gateway(options: Mapping[str, str]) -> None:
    """Start the driver JVM with its stderr passed through :func:`_forward_jvm_stderr`
    (pyspark's own start-up otherwise hands the JVM this process's stderr)."""
    from subprocess import PIPE

    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None:
        return
    conf = SparkConf(loadDefaults=False).setAll(list(options.items()))
    gateway = launch_gateway(conf, popen_kwargs={"stderr": PIPE})
    process = getattr(gateway, "proc", None)
    if process is not None and process.stderr is not None:
        threading.Thread(target=_forward_jvm_stderr, args=(process.stderr,), daemon=True,
                         name="spark-jvm-stderr").start()
    SparkContext._ensure_initialized(gateway=gateway)


def executors_of_master(master: str) -> int | None:
    """Task slots implied by a ``local`` master; ``None`` for cluster masters."""
    return local_slots(master) if master_kind(master) == LOCAL else None


def build_session(master: str = "local[2]", app_name: str = "pipesched",
                  scheduler_mode: str = "FAIR", pool_levels: Sequence[int] = (1, 2),
                  max_executors: int | None = None, event_log_dir: str | Path | None = None,
                  shuffle_partitions: int = 4, lean_jvm: bool = False,
                  conf: Mapping[str, str] | None = None,
                  log_level: str | None = None,
                  start_timeout_s: float | None = None,
                  min_pools_per_level: int = 1) -> SparkSession:
    """Start (or return the running) SparkSession configured for pipesched.

    ``scheduler_mode`` is ``"FAIR"`` (with the pool ladder for ``pool_levels``, at least
    ``min_pools_per_level`` pools per level) or ``"FIFO"``.
    ``max_executors`` defaults to N of ``local[N]``; give it for cluster masters.
    ``lean_jvm`` starts the driver and executor JVMs with :data:`LEAN_JVM_OPTIONS`.
    ``log_level`` (default: ``$PIPESCHED_SPARK_LOG_LEVEL`` or ``WARN``) is the JVM's log level.
    ``conf`` overrides every setting made here; without ``spark.driver.host`` the driver listens
    where :func:`spark_integration.settings.default_driver_conf` says. ``start_timeout_s``
    bounds the start (a cluster master that accepts TCP but never registers the application
    would otherwise hold it for a minute of Spark's own retries): past it the driver JVM is
    stopped and TimeoutError names the master. The caller's SIGINT handler is kept: pyspark
    would replace it with one that calls ``cancelAllJobs`` from inside the signal handler (on
    the main thread, possibly in the middle of that thread's own Py4J call); the DagExecutor
    cancels its own jobs on ``KeyboardInterrupt`` instead.
    """
    mode = scheduler_mode.upper()
    if mode not in ("FAIR", "FIFO"):
        raise ValueError(f"scheduler_mode must be FAIR or FIFO, got {scheduler_mode!r}")
    level = resolve_log_level(log_level)
    options = {"spark.master": master, "spark.app.name": app_name,
               "spark.ui.enabled": "false",
               "spark.ui.showConsoleProgress": "false",
               "spark.sql.shuffle.partitions": str(shuffle_partitions),
               "spark.scheduler.mode": mode}
    if "spark.driver.host" not in (conf or {}):
        options.update(default_driver_conf(master))
    if mode == "FAIR":
        slots = max_executors or executors_of_master(master)
        if slots is None:
            raise ValueError(f"max_executors is needed for master {master!r}")
        path = write_allocation_file(pool_ladder(pool_levels, slots, min_pools_per_level))
        options["spark.scheduler.allocation.file"] = str(path)
    if event_log_dir is not None:
        log_dir = Path(event_log_dir).resolve()
        log_dir.mkdir(parents=True, exist_ok=True)
        options["spark.eventLog.enabled"] = "true"
        options["spark.eventLog.dir"] = log_dir.as_uri()
    driver_java = [f"-Dlog4j.configurationFile={log4j_file(level).as_uri()}"]
    if lean_jvm:
        driver_java.append(LEAN_JVM_OPTIONS)
        options["spark.executor.extraJavaOptions"] = LEAN_JVM_OPTIONS
    options.update(conf or {})
    options["spark.driver.extraJavaOptions"] = " ".join(
        [*driver_java, (conf or {}).get("spark.driver.extraJavaOptions", "")]).strip()
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                            category=FutureWarning)
    for key, value in jvm_environment(options).items():
        os.environ.setdefault(key, value)
    expired = threading.Event()

    def give_up() -> None:
        expired.set()
        stop_session(None, timeout_s=5.0)

    main_thread = threading.current_thread() is threading.main_thread()
    caller_handler = signal.getsignal(signal.SIGINT) if main_thread else None
    watchdog = threading.Timer(start_timeout_s or 0.0, give_up)
    watchdog.daemon = True
    if start_timeout_s is not None:
        watchdog.start()
    try:
        _launch_gateway(options)
        builder = SparkSession.builder
        for key, value in options.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
    except Exception:  # deliberate: a start the watchdog ended; anything else re-raised
        if not expired.is_set():
            raise
    finally:
        watchdog.cancel()
        if caller_handler is not None:
            signal.signal(signal.SIGINT, caller_handler)
    if expired.is_set():
        watchdog.join(timeout=10.0)  # the JVM is reaped before the process may exit
        raise TimeoutError(f"the Spark master {master} did not accept this application within "
                           f"{start_timeout_s:.0f} s (is it a Spark master?)") from None
    session.sparkContext.setLogLevel(level)
    return session


def task_slots(sc, fixed: int | None = None) -> int:
    """Task slots of a running SparkContext: ``fixed`` when given, N of ``local[N]``, else the
    cores of the executors registered now (so a lost worker shrinks it)."""
    if fixed is not None:
        return fixed
    if sc.master.startswith("local"):
        return int(sc.defaultParallelism)
    executors = sc._jsc.sc().statusStore().executorList(True).iterator()
    cores = 0
    while executors.hasNext():
        summary = executors.next()
        if summary.id() != "driver":
            cores += int(summary.totalCores())
    return max(1, cores)


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


def stop_session(spark: SparkSession | None, timeout_s: float = 15.0) -> None:
    """Stop the SparkContext, close the Py4J gateway and end the driver JVM (killed if it has
    not exited within ``timeout_s``): after Ctrl-C nothing of Spark outlives the process."""
    from pyspark import SparkContext

    if spark is not None:
        try:
            spark.stop()
        except Exception:  # noqa: BLE001  # deliberate: cleanup; after Ctrl-C the JVM may be gone
            pass
    gateway = SparkContext._gateway
    if gateway is None:
        return
    process = getattr(gateway, "proc", None)
    try:
        gateway.shutdown()
    except Exception:  # noqa: BLE001  # deliberate: cleanup; the gateway may be gone already
        pass
    SparkContext._gateway = None
    SparkContext._jvm = None
    if process is not None:
        if process.stdin is not None:
            process.stdin.close()  # the gateway server exits when its stdin closes
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
