"""Run a TPC-H job stream on live Spark under one scheduler and write what happened.

    python -m spark_integration.run --scheduler sjf --queries q1,q3,q6 --scale 0.1 \
        [--jobs 8 --interarrival 2 --seed 0] [--master spark://HOST:7077 --executors 2] \
        [--conf KEY=VALUE ...] [--properties-file FILE] [--driver-host ADDR] \
        [--data DIR_OR_URI] [--json run.json] [--workload-out replay.json] \
        [--kill-worker 1 --kill-after 5] [--log-level WARN]

``--sql-file FILE`` schedules the user's own SQL instead (one job per statement, run as written
by the :class:`~spark_integration.policy_scheduler.PolicyScheduler`, the TPC-H tables of
``--scale`` registered as views; ``--history FILE`` keeps what earlier runs cost); without it
the project's TPC-H query DAGs run node by node (:class:`~spark_integration.executor.
DagExecutor`).

``--scheduler``: ``spark-fifo``, ``spark-fair``, a heuristic of ``heuristics.spark_dag``,
``agent`` or a model ``.zip``. Without ``--jobs`` every query runs once as a batch at time 0.
``--master`` and the other cluster flags: :mod:`spark_integration.settings`. ``--data``: where
the TPC-H tables live or are generated once (a local directory or a Hadoop URI,
:mod:`spark_integration.tpch`). ``--kill-worker I --kill-after S`` SIGKILLs worker ``I`` of a
cluster started by :mod:`spark_integration.cluster` S seconds into the run (fault injection).
A scheduler observes a calibrated template per query: ``--traces FILE`` (it must cover
``--queries``), else ``data/spark_traces/tpch_<scale>.json`` when that covers them, else the
session calibrates them before the run (each query timed alone at full parallelism with event
logging on, as ``benchmarks.spark_real`` does); the Spark baselines observe none. The printed
mean JCT is over the finished jobs; failed jobs are counted beside it.
Exit status 0 when every job finished, 1 otherwise, 2 for a mistake in the arguments or an
unusable cluster (one line, arguments checked before the JVM starts; ``--debug`` shows the
traceback), 130 after Ctrl-C (the driver JVM is stopped before the process exits).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from envs.spark_dag import Job, save_workload
from spark_integration import cluster
from spark_integration.calibration import EVENT_LOG_CONF, calibrate_in_session
from spark_integration.cli import guarded
from spark_integration.executor import DagExecutor, RunResult
from spark_integration.jobs import batch, poisson_arrivals, poisson_stream
from spark_integration.policy_scheduler import PolicyScheduler, UserJob
from spark_integration.queries import QUERIES
from spark_integration.schedulers import make_driver
from spark_integration.session import (
    LOG_LEVEL_ENV,
    build_session,
    resolve_log_level,
    stop_session,
    wait_for_executors,
)
from spark_integration.settings import (
    LOCAL,
    ClusterSettings,
    add_cluster_arguments,
    cluster_settings,
)
from spark_integration.tpch import (
    data_location,
    is_local,
    root_problem,
    scale_label,
    table_paths,
)
from spark_integration.tpch_sql import register_tables, statements_from_file
from spark_integration.tracegen import default_trace_path, load_templates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_integration.run",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--scheduler", default="sjf")
    parser.add_argument("--queries", default=",".join(QUERIES))
    parser.add_argument("--sql-file", help="schedule the statements of this SQL file (';'-"
                                           "separated) as they are, instead of --queries")
    parser.add_argument("--history", help="--sql-file: JSON file of earlier runs' costs (read "
                                          "and extended)")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--jobs", type=int, help="Poisson stream of this many jobs")
    parser.add_argument("--interarrival", type=float, default=2.0, help="mean gap, seconds")
    parser.add_argument("--seed", type=int, default=0)
    add_cluster_arguments(parser)
    parser.add_argument("--data", help="TPC-H root: a local directory or a Hadoop URI such as "
                                       "hdfs://NN/tpch (default .cache/tpch)")
    parser.add_argument("--work-dir", help="node outputs (default: a temporary directory; on a "
                                           "multi-machine cluster, a mount all executors share)")
    parser.add_argument("--traces", help="calibrated trace JSON covering --queries (default: "
                                         "data/spark_traces/tpch_<scale>.json when it covers "
                                         "them, else calibrated in the session)")
    parser.add_argument("--max-retries", type=int, default=1)
    parser.add_argument("--wait-executors", type=float, default=60.0, metavar="SECONDS",
                        help="how long a cluster may take to register its executors")
    parser.add_argument("--json", help="write the run record here")
    parser.add_argument("--workload-out", help="write the run as replayable workload JSON")
    parser.add_argument("--kill-worker", type=int, help="cluster worker index to kill")
    parser.add_argument("--kill-after", type=float, default=5.0)
    parser.add_argument("--cluster-state-dir", default=str(cluster.DEFAULT_STATE_DIR))
    parser.add_argument("--lean-jvm", action="store_true",
                        help="C1-only JIT and serial GC (less CPU for short runs)")
    parser.add_argument("--allow-any-shape", action="store_true",
                        help="use a graph policy at an executor count it was not validated for")
    parser.add_argument("--log-level", help=f"Spark's log level (default ${LOG_LEVEL_ENV} or "
                                            f"WARN)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    args = parser.parse_args(argv)

    def work() -> int:
        problem = argument_problem(args)
        if problem is not None:
            raise ValueError(problem)
        if args.sql_file:
            return run_sql(args, cluster_settings(args))
        return run(args, cluster_settings(args))

    return guarded(parser, args.debug, work)


def argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments that needs no cluster, or None (the cluster flags are
    checked by :func:`spark_integration.settings.cluster_settings`); no JVM is started."""
    if args.sql_file:
        statements_from_file(args.sql_file)  # ValueError naming the file: one line
    unknown = [q for q in args.queries.split(",") if q and q not in QUERIES]
    if unknown:
        return f"--queries: unknown {unknown}; known: {sorted(QUERIES)}"
    if args.scale <= 0 or args.interarrival <= 0:
        return "--scale and --interarrival must be > 0"
    if args.jobs is not None and args.jobs < 1:
        return f"--jobs must be >= 1, got {args.jobs}"
    if args.max_retries < 0 or not args.wait_executors > 0:
        return (f"--max-retries must be >= 0 and --wait-executors > 0, got {args.max_retries} "
                f"and {args.wait_executors}")
    if args.traces and not Path(args.traces).is_file():
        return f"--traces: {args.traces} does not exist"
    if args.work_dir and not Path(args.work_dir).is_dir():
        return f"--work-dir: {args.work_dir} does not exist"
    resolve_log_level(args.log_level)
    problem = root_problem(args.data)
    if problem is not None:
        return problem
    if args.scheduler.endswith(".zip"):
        from agents.model_check import load_for_env
        from envs import PROBLEMS

        load_for_env(args.scheduler, PROBLEMS["spark_dag"].env_id)  # ModelError (a ValueError): one line
    return None


def trace_templates(args: argparse.Namespace, queries: list[str]
                    ) -> tuple[str, dict[str, Job]] | None:
    """Where the scheduler's templates come from and the templates: ``--traces`` (which must
    cover every query), else the shipped trace of ``--scale`` when it covers them; None when
    there is none, so the session calibrates them itself. No JVM is started."""
    if args.traces:
        templates = load_templates(args.traces)
        lacking = sorted(set(queries) - set(templates))
        if lacking:
            raise ValueError(f"--traces: {args.traces} has no template for {lacking}; record "
                             f"them with python -m spark_integration.tracegen --scale "
                             f"{args.scale:g} --queries {','.join(lacking)} --out FILE")
        return args.traces, templates
    trace = default_trace_path(args.scale)
    templates = load_templates(trace) if trace.is_file() else {}
    if set(queries) <= set(templates):
        return str(trace), templates
    return None


def run(args: argparse.Namespace, settings: ClusterSettings) -> int:
    queries = [q for q in args.queries.split(",") if q]
    driver = make_driver(args.scheduler,
                         executors=None if args.allow_any_shape else settings.executors,
                         master=settings.master)
    specs = (poisson_stream(queries, args.jobs, args.interarrival,
                            np.random.default_rng(args.seed)) if args.jobs else batch(queries))
    # the Spark-native baselines observe nothing; a scheduler observes calibrated templates
    source = trace_templates(args, queries) if driver.scheduler is not None else ("none", {})
    # local data is generated before any JVM starts; a remote root through the session
    data = data_location(args.scale, args.data) if is_local(args.data or "") else None
    spark = None
    with ExitStack() as stack:
        event_log = None
        if source is None:
            event_log = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="pipesched-eventlog-")))
        try:
            spark = build_session(settings.master, app_name=f"pipesched-{driver.name}",
                                  max_executors=settings.executors, lean_jvm=args.lean_jvm,
                                  event_log_dir=event_log,
                                  conf={**settings.conf, **(EVENT_LOG_CONF if event_log else {})},
                                  log_level=args.log_level,
                                  start_timeout_s=settings.start_timeout_s)
            if settings.kind != LOCAL:
                wait_for_executors(spark, settings.processes, args.wait_executors)
            if data is None:
                data = data_location(args.scale, args.data, spark)
            work = stack.enter_context(tempfile.TemporaryDirectory(prefix="pipesched-run-",
                                                                   dir=args.work_dir))
            if source is None:
                source = calibrate_templates(spark, data, queries, settings.executors,
                                             Path(work) / "trace", event_log, args.scale)
            if args.kill_worker is not None:
                timer = threading.Timer(args.kill_after, cluster.kill_worker,
                                        (args.kill_worker, args.cluster_state_dir))
                timer.daemon = True
                timer.start()
            executor = DagExecutor(spark, driver.scheduler, tables=table_paths(data),
                                   work_dir=work, limits=driver.limits, templates=source[1],
                                   max_retries=args.max_retries,
                                   native_pools=driver.native_pools, name=driver.name)
            result = executor.run(specs)
            context = spark.sparkContext
            where = {"master": settings.master, "app_id": context.applicationId, "data": data,
                     "driver_host": context.getConf().get("spark.driver.host"),
                     "templates": source[0]}
        finally:
            stop_session(spark)
    report(result, where, args.json,
           f", executors seen {sorted(set(result.executor_counts))}")
    if args.workload_out:
        save_workload(result.to_workload(), args.workload_out)
    return 0 if len(result.finished) == len(result.jobs) else 1


def report(result: RunResult, where: dict, json_path: str | None, extra: str = "") -> None:
    """The run's one summary line, and its record (with ``where``) in ``json_path``."""
    print(f"{result.scheduler}: {len(result.finished)}/{len(result.jobs)} jobs finished, "
          f"{len(result.failed)} failed, mean JCT of the finished {result.mean_jct_s:.2f} s, "
          f"makespan {result.makespan_s:.2f} s{extra}")
    if json_path:
        Path(json_path).write_text(json.dumps({**result.to_json(), "spark": where}, indent=1))


def sql_stream(statements: list[tuple[str, str]], jobs: int | None, interarrival_s: float,
               rng: np.random.Generator) -> list[UserJob]:
    """Every statement once at time 0, or ``jobs`` statements drawn uniformly with exponential
    gaps (the first at 0)."""
    if jobs is None:
        return [UserJob(name, text, 0.0) for name, text in statements]
    picks = rng.integers(len(statements), size=jobs)
    return [UserJob(f"{statements[k][0]}@{i}", statements[k][1], float(t))
            for i, (k, t) in enumerate(zip(picks, poisson_arrivals(jobs, interarrival_s, rng),
                                           strict=True))]


def run_sql(args: argparse.Namespace, settings: ClusterSettings) -> int:
    """``--sql-file``: the statements as a stream under the PolicyScheduler."""
    stream = sql_stream(statements_from_file(args.sql_file), args.jobs, args.interarrival,
                        np.random.default_rng(args.seed))
    data = data_location(args.scale, args.data) if is_local(args.data or "") else None
    spark = None
    try:
        spark = build_session(settings.master, app_name=f"pipesched-sql-{args.scheduler}",
                              max_executors=settings.executors, lean_jvm=args.lean_jvm,
                              conf=settings.conf, log_level=args.log_level,
                              start_timeout_s=settings.start_timeout_s,
                              pool_levels=range(1, settings.executors + 1),
                              min_pools_per_level=len(stream))
        if settings.kind != LOCAL:
            wait_for_executors(spark, settings.processes, args.wait_executors)
        if data is None:
            data = data_location(args.scale, args.data, spark)
        register_tables(spark, table_paths(data))
        with PolicyScheduler(spark, args.scheduler, history=args.history,
                             total_executors=None if args.allow_any_shape
                             else settings.executors, progress=True) as sched:
            result = sched.run(stream)
        where = {"master": settings.master, "app_id": spark.sparkContext.applicationId,
                 "data": data, "sql_file": args.sql_file}
    finally:
        stop_session(spark)
    report(result, where, args.json)
    return 0 if len(result.finished) == len(result.jobs) else 1


def calibrate_templates(spark, data: str, queries: list[str], executors: int, work: Path,
                        event_log: Path, scale: float) -> tuple[str, dict[str, Job]]:
    """No trace of this scale covers the queries: time each alone at full parallelism in this
    session and calibrate the templates from its event log (as ``benchmarks.spark_real``)."""
    print(f"no trace at {default_trace_path(scale)} covers {sorted(set(queries))}: timing "
          f"each query alone on {executors} executors in this session first", file=sys.stderr,
          flush=True)
    _, templates = calibrate_in_session(spark, table_paths(data), sorted(set(queries)), 1,
                                        work, event_log, f"session-{scale_label(scale)}",
                                        executors, levels=[executors])
    return "calibrated in this session", templates


if __name__ == "__main__":
    raise SystemExit(main())
