"""Run a TPC-H job stream on live Spark under one scheduler and write what happened.

    python -m spark_integration.run --scheduler sjf --queries q1,q3,q6 --scale 0.1 \
        [--jobs 8 --interarrival 2 --seed 0] [--master spark://127.0.0.1:7077 --executors 2] \
        [--json run.json] [--workload-out replay.json] [--kill-worker 1 --kill-after 5]

``--scheduler``: ``spark-fifo``, ``spark-fair``, a heuristic of ``heuristics.spark_dag``,
``agent`` or a model ``.zip``. Without ``--jobs`` every query runs once as a batch at time 0.
``--kill-worker I --kill-after S`` SIGKILLs standalone worker ``I`` S seconds into the run
(fault injection). Exit status 0 when every job finished, 1 otherwise, 2 for a mistake in the
arguments (one line, checked before the JVM starts; ``--debug`` shows the traceback), 130 after
Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from envs.spark_dag import save_workload
from spark_integration import cluster
from spark_integration.executor import DagExecutor
from spark_integration.jobs import batch, poisson_stream
from spark_integration.queries import QUERIES
from spark_integration.schedulers import make_driver
from spark_integration.session import build_session, wait_for_executors
from spark_integration.tpch import ensure_tpch, table_paths
from spark_integration.tracegen import default_trace_path, load_templates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_integration.run",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--scheduler", default="sjf")
    parser.add_argument("--queries", default=",".join(QUERIES))
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--jobs", type=int, help="Poisson stream of this many jobs")
    parser.add_argument("--interarrival", type=float, default=2.0, help="mean gap, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--executors", type=int, help="task slots (needed for spark:// masters)")
    parser.add_argument("--traces", help="calibrated trace JSON (default data/spark_traces)")
    parser.add_argument("--max-retries", type=int, default=1)
    parser.add_argument("--json", help="write the run record here")
    parser.add_argument("--workload-out", help="write the run as replayable workload JSON")
    parser.add_argument("--kill-worker", type=int, help="standalone worker index to kill")
    parser.add_argument("--kill-after", type=float, default=5.0)
    parser.add_argument("--cluster-state-dir", default=str(cluster.DEFAULT_STATE_DIR))
    parser.add_argument("--lean-jvm", action="store_true",
                        help="C1-only JIT and serial GC (less CPU for short runs)")
    parser.add_argument("--allow-any-shape", action="store_true",
                        help="use a graph policy at an executor count it was not validated for")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    args = parser.parse_args(argv)
    interrupted: list[bool] = []

    def on_interrupt(signum: int, frame: object) -> None:
        interrupted.append(True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        problem = argument_problem(args)
        if problem is None:
            return run(args)
    except Exception as error:
        # Ctrl-C also reaches the JVM, so py4j may fail before KeyboardInterrupt surfaces
        if interrupted and not args.debug:
            print("interrupted; nothing written", file=sys.stderr)
            return 130
        if args.debug or not isinstance(error, OSError | ValueError):
            raise
        problem = str(error)
    except KeyboardInterrupt:
        print("interrupted; nothing written", file=sys.stderr)
        return 130
    parser.exit(2, f"{parser.prog}: error: {problem}\n")


def task_slots(args: argparse.Namespace) -> int:
    """Executors the run will have: ``local[N]``'s N (``local`` and ``local[*]``: the cores)
    or ``--executors`` for a cluster."""
    if args.master.startswith("local"):
        inner = args.master.removeprefix("local").strip("[]")
        return int(inner) if inner.isdigit() else os.cpu_count() or 1
    return args.executors


def argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, found before any JVM starts; None when nothing."""
    unknown = [q for q in args.queries.split(",") if q and q not in QUERIES]
    if unknown:
        return f"--queries: unknown {unknown}; known: {sorted(QUERIES)}"
    if args.scale <= 0 or args.interarrival <= 0:
        return "--scale and --interarrival must be > 0"
    for flag, value in (("--jobs", args.jobs), ("--executors", args.executors)):
        if value is not None and value < 1:
            return f"{flag} must be >= 1, got {value}"
    if args.traces and not Path(args.traces).is_file():
        return f"--traces: {args.traces} does not exist"
    if args.scheduler.endswith(".zip"):
        from agents.model_check import SPARK_ENV_ID, load_for_env

        load_for_env(args.scheduler, SPARK_ENV_ID)  # ModelError (a ValueError): one line
    if not args.master.startswith("local"):
        if args.executors is None:
            return "--executors is required for a cluster master"
        return master_problem(args.master)
    return None


def master_problem(master: str, timeout_s: float = 3.0) -> str | None:
    """Whether a ``spark://HOST:PORT`` master accepts a TCP connection."""
    if not master.startswith("spark://"):
        return None
    host, _, port = master.removeprefix("spark://").rpartition(":")
    if not host or not port.isdigit():
        return f"--master must be local[N] or spark://HOST:PORT, got {master!r}"
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        return (f"cannot reach the Spark master {master} ({error.strerror or error}); start one "
                f"with python -m spark_integration.cluster up")
    return None


def run(args: argparse.Namespace) -> int:
    queries = [q for q in args.queries.split(",") if q]
    driver = make_driver(args.scheduler,
                         executors=None if args.allow_any_shape else task_slots(args))
    specs = (poisson_stream(queries, args.jobs, args.interarrival,
                            np.random.default_rng(args.seed)) if args.jobs else batch(queries))
    trace = Path(args.traces) if args.traces else default_trace_path(args.scale)
    templates = load_templates(trace) if trace.exists() else {}
    if not templates:
        print(f"note: no trace at {trace}; nodes are estimated as equal", file=sys.stderr)
    conf = {}
    if not args.master.startswith("local"):
        conf = {"spark.executor.memory": "512m", "spark.executor.cores": "1",
                "spark.cores.max": str(args.executors)}
    spark = build_session(args.master, app_name=f"pipesched-{driver.name}",
                          max_executors=args.executors, lean_jvm=args.lean_jvm, conf=conf)
    if conf:
        wait_for_executors(spark, args.executors)
    if args.kill_worker is not None:
        timer = threading.Timer(args.kill_after, cluster.kill_worker,
                                (args.kill_worker, args.cluster_state_dir))
        timer.daemon = True
        timer.start()
    with tempfile.TemporaryDirectory(prefix="pipesched-run-") as work:
        executor = DagExecutor(spark, driver.scheduler, tables=table_paths(
            ensure_tpch(args.scale)), work_dir=work, limits=driver.limits, templates=templates,
            max_retries=args.max_retries, native_pools=driver.native_pools, name=driver.name)
        try:
            result = executor.run(specs)
        finally:
            try:
                spark.stop()
            except Exception:  # noqa: BLE001  (after Ctrl-C the JVM may already be gone)
                pass
    summary = result.to_json()
    print(f"{driver.name}: {len(result.finished)}/{len(result.jobs)} jobs, mean JCT "
          f"{result.mean_jct_s:.2f} s, makespan {result.makespan_s:.2f} s, executors seen "
          f"{summary['executor_counts']}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    if args.workload_out:
        save_workload(result.to_workload(), args.workload_out)
    return 0 if len(result.finished) == len(result.jobs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
