"""Live Spark: pipesched schedulers against Spark's own FIFO and FAIR on a TPC-H job stream,
under one fair protocol.

    python -m benchmarks.spark_real [--quick] [--out DIR] [--scale 1] [--jobs 20]
        [--repeats 3] [--trace-repeats 2] [--masters local,standalone] [--load 1.5] [--seed 0]
        [--partition-rule fixed|parallelism] [--data DIR_OR_URI] [--log-level WARN]
    python -m benchmarks.spark_real --master spark://HOST:PORT --executors 2 [--conf K=V ...]
        [--properties-file F] [--driver-host ADDR] ...     # a cluster this run did not start

Masters: ``local`` (``local[2]``), ``standalone`` (a 2-worker x 1-core standalone cluster this
run starts on 127.0.0.1), or with ``--master URL`` any running cluster (the flags of
:mod:`spark_integration.settings`; every argument, the master's reachability and the agent's
shape are checked before a JVM starts). Per master, in ONE SparkSession with event logging on:

1. a warm-up batch (class loading, JIT);
2. in-session calibration: every query of the stream runs alone, node after node, at each
   parallelism 1..E, ``--trace-repeats`` times; the median node wall times
   (:class:`spark_integration.calibration.NodeTimes`) and the session's event log converted
   to calibrated templates (:func:`spark_integration.tracegen.calibrated_jobs`) are what the
   schedulers observe and what the predictions use;
3. the job stream (queries drawn uniformly, Poisson arrivals with mean gap = mean isolated
   job time at full parallelism / ``--load``) runs once per driver in each of ``--repeats``
   paired repeats: ``spark-fifo`` (every node submitted as soon as it is ready into Spark's
   FIFO queue), ``spark-fair`` (likewise, one FAIR pool per job), and pipesched ``fair``,
   ``sjf``, ``contention_free`` and the agent
   (``spark_integration.schedulers.agent_path(master)``: the local[2] policy on ``local``,
   the cluster policy elsewhere; whatever is there when the run starts) through
   :class:`spark_integration.DagExecutor`. The driver order
   rotates between repeats (interleaved, so slow drift of the machine spreads over all
   drivers), and a pace probe (three queries timed alone) runs right before every run.

Fairness: with ``--partition-rule fixed`` (default) every node of every driver, both Spark
baselines included, has ``2 * E`` partitions; drivers differ only in what they launch, when,
and into which pool. ``parallelism`` is the older rule (a pipesched node launched at
parallelism ``q`` gets ``2 q`` partitions, the baselines ``2 E``).

Targets (issue 13's, computed per paired repeat, then mean and 95% t-interval over repeats):
agent mean JCT <= 0.80 x Spark FIFO's and <= 0.90 x Spark FAIR's, and <= the best other
pipesched driver's (ratio <= 1); best pipesched <= 0.80 x Spark FIFO; every held-out job's
JCT predicted within 25% by the executor model fitted on the master's first ``fair`` run.
A driver's mean JCT counts its finished jobs only, so a run with failed jobs would look fast:
when any driver of a master has failed jobs (``failed_jobs`` in the rows and the summary), every
target of that master fails with that reason instead of being judged on the ratio (no penalty
time is made up for a failed job); a target whose drivers did not run fails with that reason.
``--quick``: scale 0.1, 4 jobs at load 3, 1 repeat, 1 timing, local[2] only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import Missing, markdown_table, mean_ci, parse_args, target, write_report

NAME = "spark_real"
PIPESCHED = ["fair", "sjf", "contention_free", "agent"]
DRIVERS = ["spark-fifo", "spark-fair", *PIPESCHED]
EXECUTORS = 2
TASKS_PER_EXECUTOR = 2
# timed alone right before every run: the machine's pace then vs at calibration time
PROBE = ("q6", "q12", "q14")
PARTITION_RULES = ("fixed", "parallelism")


@dataclass
class MasterRun:
    """One master's part of the benchmark: the measured rows, the pipesched runs for the
    calibration, and the in-session calibration data."""

    rows: list[dict[str, Any]]
    live_runs: list[tuple]
    records: list[dict[str, Any]]
    specs: list
    gap_s: float
    times: Any  # spark_integration.calibration.NodeTimes
    templates: dict[str, Any]
    trace_s: float
    executors: int = EXECUTORS
    session: dict[str, Any] | None = None


def _session(master: str, state_dir: Path, event_log_dir: Path, settings=None,
             log_level: str | None = None, extra_conf: dict[str, str] | None = None):
    """The session for ``master`` (``local``, ``standalone`` started here with ``extra_conf``
    on top, or the cluster of ``settings``), the cluster this run started (or None) and the
    executor count."""
    from spark_integration import cluster
    from spark_integration.calibration import EVENT_LOG_CONF
    from spark_integration.session import build_session, wait_for_executors
    from spark_integration.settings import STANDALONE, manager_conf

    conf = {**EVENT_LOG_CONF, **(extra_conf or {})}
    if settings is not None:
        spark = build_session(settings.master, app_name="pipesched-bench",
                              max_executors=settings.executors, event_log_dir=event_log_dir,
                              conf={**conf, **settings.conf}, log_level=log_level,
                              start_timeout_s=settings.start_timeout_s)
        wait_for_executors(spark, settings.processes)
        return spark, None, settings.executors
    if master == "local":
        return build_session(f"local[{EXECUTORS}]", app_name="pipesched-bench",
                             max_executors=EXECUTORS, event_log_dir=event_log_dir, conf=conf,
                             log_level=log_level), None, EXECUTORS
    if master != "standalone":
        raise ValueError(f"master {master!r}: use local, standalone or a cluster's settings")
    info = cluster.up(workers=EXECUTORS, cores=1, memory="1g", state_dir=state_dir)
    try:
        spark = build_session(info.master_url, app_name="pipesched-bench",
                              max_executors=EXECUTORS, event_log_dir=event_log_dir,
                              conf={**manager_conf(STANDALONE, EXECUTORS, 1, "512m"), **conf},
                              log_level=log_level)
        wait_for_executors(spark, EXECUTORS)
    except BaseException:  # deliberate: cleanup of the cluster started here, then re-raised
        cluster.down(state_dir)
        raise
    return spark, info, EXECUTORS


def run_master(master: str, drivers: Sequence[str], unit_specs, load: float, tables,
               repeats: int, trace_repeats: int, scale: float, work: Path,
               partition_rule: str = "parallelism", settings=None,
               log_level: str | None = None, extra_conf: dict[str, str] | None = None
               ) -> MasterRun:
    """Warm-up, calibration and ``repeats`` paired repeats of every driver on ``master``
    (module docstring); ``settings`` (a :class:`spark_integration.settings.ClusterSettings`)
    for a cluster this run did not start."""
    from spark_integration.calibration import calibrate_in_session, pace_of
    from spark_integration.executor import DagExecutor, latency_summary_ms
    from spark_integration.jobs import JobSpec, batch
    from spark_integration.nodes import NodeRunner
    from spark_integration.queries import QUERIES
    from spark_integration.schedulers import make_driver
    from spark_integration.session import stop_session
    from spark_integration.tracegen import time_nodes

    if partition_rule not in PARTITION_RULES:
        raise ValueError(f"partition rule {partition_rule!r}: use one of {PARTITION_RULES}")
    rows: list[dict[str, Any]] = []
    live_runs: list[tuple] = []
    records: list[dict[str, Any]] = []
    event_log_dir = work / "eventlog"
    spark, info, executors = _session(master, work / "cluster", event_log_dir, settings,
                                      log_level, extra_conf)
    fixed = TASKS_PER_EXECUTOR * executors if partition_rule == "fixed" else None
    try:
        context = spark.sparkContext
        session = {"master": context.master, "app_id": context.applicationId,
                   "driver_host": context.getConf().get("spark.driver.host"),
                   "executors": executors, "partition_rule": partition_rule,
                   "partitions_per_node": fixed}
        # warm the JVMs (class loading, JIT) so neither the timing nor the first driver pays it
        DagExecutor(spark, None, tables=tables, work_dir=work / "warmup", progress=False).run(
            batch(["q3", "q12", "q14", "q18"]))
        started = time.monotonic()
        queries = sorted({s.dag.name for s in unit_specs} | set(PROBE))
        times, templates = calibrate_in_session(
            spark, tables, queries, trace_repeats, work / "trace", event_log_dir,
            f"{master}-sf{scale:g}", executors, executors if fixed else None)
        trace_s = time.monotonic() - started
        gap = float(np.mean([times.job_s(s.dag.name, executors) for s in unit_specs])) / load
        specs = [JobSpec(s.name, s.dag, round(s.arrival_s * gap, 3)) for s in unit_specs]
        print(f"{master}: timed {len(queries)} queries in {trace_s:.0f} s; mean gap "
              f"{gap:.2f} s; partitions per node: "
              f"{fixed or 'by parallelism'}", flush=True)
        runner = NodeRunner(spark, tables)
        for rep in range(repeats):
            order = list(drivers[rep % len(drivers):]) + list(drivers[:rep % len(drivers)])
            for name in order:
                probe = time_nodes(runner, [QUERIES[q] for q in PROBE], [executors], 1,
                                   work / "probe", quiet=True,
                                   partition_level=executors if fixed else None)
                pace = pace_of(times, {q: walls[executors] for (q, _), walls in probe.items()},
                               executors)
                driver = make_driver(name, executors=executors, master=master)
                executor = DagExecutor(spark, driver.scheduler, tables=tables,
                                       work_dir=work / "runs", limits=driver.limits,
                                       templates=templates, native_pools=driver.native_pools,
                                       name=name, progress=False, fixed_partitions=fixed,
                                       tasks_per_executor=TASKS_PER_EXECUTOR)
                result = executor.run(specs)
                row = {"master": master, "scheduler": name, "repeat": rep,
                       "mean_jct_s": result.mean_jct_s, "makespan_s": result.makespan_s,
                       "jobs": len(result.jobs), "failed_jobs": len(result.failed),
                       "decisions": result.decisions, "invalid_actions": result.invalid_actions,
                       "executors_seen": sorted(set(result.executor_counts)), "pace": pace,
                       "wall_s": result.wall_s, "partition_rule": partition_rule,
                       "decision_ms": latency_summary_ms(result.decision_latency_s)}
                rows.append(row)
                records.append({"master": master, "repeat": rep, **result.to_json()})
                print(f"{master:10s} rep {rep} {name:16s} mean JCT {result.mean_jct_s:7.2f} s "
                      f"makespan {result.makespan_s:7.2f} s failed {len(result.failed)} "
                      f"pace {pace:.2f}",
                      flush=True)
                if driver.scheduler is not None:
                    live_runs.append((name, rep, result, driver.limits, pace))
    finally:
        stop_session(spark)
        if info is not None:
            from spark_integration import cluster

            cluster.down(work / "cluster")
    return MasterRun(rows, live_runs, records, specs, gap, times, templates, trace_s,
                     executors, session)


def calibrate(master: str, run: MasterRun, missing: Missing, fit_on: str = "fair"
              ) -> tuple[Any, list[dict[str, Any]]]:
    """Fit the executor model on the first ``fit_on`` run of ``master``, then predict every
    pipesched run's jobs with it and with the task-level SparkDagShop simulator. Without a
    ``fit_on`` run with a finished node there is no model: a ``MISSING`` line, no rows."""
    from spark_integration.calibration import (
        LiveModel,
        compare,
        fit_live_model,
        node_samples,
        predict_live,
        simulate,
        workload_for,
    )
    from spark_integration.schedulers import make_driver

    fitting = [r for r in run.live_runs if r[0] == fit_on][:1]
    if not fitting or not len(node_samples(fitting[0][2], run.times)):
        missing.add(f"executor model on {master}",
                    f"no `{fit_on}` run with a finished node to fit it on")
        return None, []
    result0, pace0 = fitting[0][2], fitting[0][4]
    model = fit_live_model([result0], run.times, [pace0])
    workload = workload_for(run.specs, run.templates)
    rows = []
    for name, rep, result, limits, pace in run.live_runs:
        paced = LiveModel(model.speed * pace, model.contention)
        executor_model = predict_live(run.specs, run.times, run.templates,
                                      make_driver(name, master=master).scheduler, limits,
                                      run.executors, paced)
        task_level = simulate(workload, make_driver(name, master=master).scheduler,
                              run.executors, limits)
        held_out = result is not result0
        by_job = {c["job"]: c for c in compare(result, task_level)}
        for c in compare(result, executor_model):
            sim = by_job[c["job"]]
            rows.append({"master": master, "scheduler": name, "repeat": rep,
                         "held_out": held_out, "pace": pace, **c,
                         "query": c["job"].split("#")[0],
                         "simulator_jct_s": sim["predicted_jct_s"],
                         "simulator_rel_error": sim["rel_error"]})
    return model, rows


def error_summary(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    from spark_integration.calibration import summarize as summarize_errors

    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["held_out"]:
            groups[tuple(row[k] for k in keys)].append(row)
    out = []
    for key, group in groups.items():
        executor = summarize_errors(group)
        simulator = summarize_errors([{"rel_error": r["simulator_rel_error"]} for r in group])
        out.append({**dict(zip(keys, key, strict=True)), **executor,
                    "sim_median_rel_error": simulator["median_rel_error"],
                    "sim_share_within_25pct": simulator["share_within_25pct"]})
    return out


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per master and driver: mean JCT and makespan over the repeats with 95% t-intervals,
    the probes' pace and the decision latency."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["master"], row["scheduler"])].append(row)
    out = []
    for (master, name), group in groups.items():
        jct, jct_ci = mean_ci([r["mean_jct_s"] for r in group])
        span, span_ci = mean_ci([r["makespan_s"] for r in group])
        out.append({"master": master, "scheduler": name, "runs": len(group),
                    "mean_jct_s": jct, "jct_ci95_s": jct_ci,
                    "makespan_s": span, "makespan_ci95_s": span_ci,
                    "pace_min": float(min(r["pace"] for r in group)),
                    "pace_max": float(max(r["pace"] for r in group)),
                    "failed_jobs": int(sum(r["failed_jobs"] for r in group)),
                    "decision_ms_median": float(np.median(
                        [r["decision_ms"].get("median", np.nan) for r in group])),
                    "decision_ms_p99": float(np.max(
                        [r["decision_ms"].get("p99", np.nan) for r in group]))})
    return out


# ratio name -> (numerator, denominator, threshold); "best_other" is the best pipesched driver
# other than the agent in that repeat, "best" the best pipesched driver including it
PAIRED_TARGETS = {
    "agent_over_spark_fifo": ("agent", "spark-fifo", 0.80),
    "agent_over_spark_fair": ("agent", "spark-fair", 0.90),
    "agent_over_best_other_pipesched": ("agent", "best_other", 1.0),
    "best_pipesched_over_spark_fifo": ("best", "spark-fifo", 0.80),
}


def failed_jobs_reason(rows: Sequence[dict[str, Any]], master: str) -> str | None:
    """Why ``master``'s mean JCTs cannot be compared: the drivers with failed jobs (their mean
    JCT counts finished jobs only, so failing looks fast), or None when no job failed."""
    failed: dict[str, int] = defaultdict(int)
    for row in rows:
        if row["master"] == master and row["failed_jobs"]:
            failed[row["scheduler"]] += row["failed_jobs"]
    if not failed:
        return None
    return ("failed jobs (" + ", ".join(f"{name}: {count}" for name, count in failed.items())
            + "): a mean JCT over the finished jobs only is not comparable")


def paired_ratios(rows: Sequence[dict[str, Any]], master: str) -> list[dict[str, Any]]:
    """Every target ratio of :data:`PAIRED_TARGETS` per paired repeat (all drivers of a repeat
    ran back to back), then its mean and 95% t-interval over the repeats; a ratio no repeat
    could form (a driver did not run) has ``repeats`` 0 and NaN values."""
    by_repeat: dict[int, dict[str, float]] = defaultdict(dict)
    for row in rows:
        if row["master"] == master:
            by_repeat[row["repeat"]][row["scheduler"]] = row["mean_jct_s"]
    out = []
    for ratio, (top, bottom, threshold) in PAIRED_TARGETS.items():
        values = []
        for jct in by_repeat.values():
            others = [jct[n] for n in PIPESCHED if n in jct and n != "agent"]
            named = {**jct, "best_other": min(others, default=np.nan),
                     "best": min([*others, jct.get("agent", np.inf)], default=np.nan)}
            if top in named and bottom in named:
                values.append(named[top] / named[bottom])
        mean, half = mean_ci(values) if values else (np.nan, np.nan)
        out.append({"master": master, "ratio": ratio, "repeats": len(values),
                    "mean": mean, "ci95": half, "threshold": threshold,
                    "repeats_met": int(sum(v <= threshold for v in values)),
                    "per_repeat": [round(v, 4) for v in values], "top": top, "bottom": bottom})
    return out


def ratio_targets(rows: Sequence[dict[str, Any]], masters: Sequence[str]
                  ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The paired ratios of every master and their targets; a target is failed with the reason
    when a driver of that master had failed jobs or a driver it compares did not run."""
    ratios = [r for master in masters for r in paired_ratios(rows, master)]
    targets: dict[str, dict[str, Any]] = {}
    for ratio in ratios:
        reason = failed_jobs_reason(rows, ratio["master"])
        if not ratio["repeats"]:
            reason = f"no repeat ran both {ratio['top']} and {ratio['bottom']}"
        entry = target(ratio["mean"], ratio["threshold"], "<=", reason)
        entry.update(ci95=ratio["ci95"], per_repeat=ratio["per_repeat"])
        targets[f"{ratio['ratio']}_{ratio['master']}"] = entry
    return ratios, targets


def prediction_target(calibration: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]],
                      masters: Sequence[str]) -> dict[str, Any]:
    """Share of held-out jobs whose JCT the executor model predicts within 25% (>= 1); failed
    with the reason when there is no held-out job or a job failed (it has no JCT to predict)."""
    held_out = [c["rel_error"] for c in calibration if c["held_out"]]
    reasons = [r for r in (failed_jobs_reason(rows, m) for m in masters) if r]
    if not held_out:
        reasons.insert(0, "no held-out job was predicted")
    value = float(np.mean(np.array(held_out) <= 0.25)) if held_out else None
    return target(value, 1.0, ">=", "; ".join(reasons) or None)


def argument_problem(args: argparse.Namespace) -> str | None:
    """Mistakes found before any JVM starts (None when there is none)."""
    for flag, value in (("--scale", args.scale), ("--load", args.load)):
        if value is not None and not value > 0:
            return f"{flag} must be > 0, got {value}"
    for flag, value in (("--jobs", args.jobs), ("--repeats", args.repeats),
                        ("--trace-repeats", args.trace_repeats)):
        if value is not None and value < 1:
            return f"{flag} must be >= 1, got {value}"
    if args.master is not None and args.masters is not None:
        return "--master (a running cluster) and --masters (local,standalone) exclude each other"
    from spark_integration.settings import user_conf

    user_conf(args)  # --conf, --properties-file and the driver flags: ValueError, one line
    unknown = [m for m in (args.masters or "local").split(",") if m not in ("local", "standalone")]
    if unknown:
        return f"--masters: unknown {unknown}; use local and/or standalone"
    unknown = [d for d in (args.drivers or "").split(",") if d and d not in DRIVERS]
    if unknown:
        return f"--drivers: unknown {unknown}; known: {','.join(DRIVERS)}"
    from spark_integration.session import resolve_log_level
    from spark_integration.tpch import root_problem

    resolve_log_level(args.log_level)
    return root_problem(args.data)


def master_label(settings) -> str:
    """``standalone@10.213.0.1``, ``yarn``, ``kubernetes@HOST`` for a running cluster."""
    from spark_integration.settings import master_endpoints

    endpoints = master_endpoints(settings.master)
    return f"{settings.kind}@{endpoints[0][0]}" if endpoints else settings.kind


def main(argv: Sequence[str] | None = None) -> None:
    from spark_integration.cli import guarded
    from spark_integration.settings import add_cluster_arguments

    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, help="TPC-H scale factor (default 1; quick 0.1)")
    parser.add_argument("--jobs", type=int, help="jobs in the stream (default 20; quick 4)")
    parser.add_argument("--repeats", type=int,
                        help="paired repeats, each running every driver (default 3; quick 1)")
    parser.add_argument("--trace-repeats", type=int,
                        help="isolated timings per query and parallelism (default 2; quick 1)")
    parser.add_argument("--masters", help="local,standalone (default both; quick: local)")
    parser.add_argument("--load", type=float,
                        help="mean isolated job time / mean gap (default 1.5; quick 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drivers", help=f"comma-separated subset of {','.join(DRIVERS)} "
                                          f"(default: all; the agent when its model exists)")
    parser.add_argument("--partition-rule", choices=PARTITION_RULES, default="fixed",
                        help="fixed: every node of every driver has 2 x executors partitions")
    parser.add_argument("--data", help="TPC-H root: local directory or Hadoop URI "
                                       "(default .cache/tpch)")
    parser.add_argument("--log-level", help="Spark's log level (default "
                                            "$PIPESCHED_SPARK_LOG_LEVEL or WARN)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    add_cluster_arguments(parser, master_default=None)
    args = parse_args(NAME, argv, parser)

    def work() -> None:
        problem = argument_problem(args)
        if problem is not None:
            raise ValueError(problem)
        benchmark(args)

    status = guarded(parser, args.debug, work)
    if status:
        raise SystemExit(status)


@dataclass(frozen=True)
class StreamPlan:
    """The flags with their ``--quick`` defaults resolved: the stream, masters and drivers."""

    scale: float
    num_jobs: int
    load: float
    repeats: int
    trace_repeats: int
    settings: Any  # spark_integration.settings.ClusterSettings, or None
    masters: list[str]
    executors: int
    drivers: list[str]


@dataclass
class Measured:
    """Every master's rows, calibration rows and record (``per_master``)."""

    rows: list[dict[str, Any]]
    calibration: list[dict[str, Any]]
    per_master: dict[str, dict[str, Any]]


def plan_stream(args: argparse.Namespace, missing: Missing) -> StreamPlan:
    """Resolve the flags; without ``--drivers`` the agent runs only where its policy exists
    (else ``missing`` says so and its targets fail)."""
    from spark_integration.schedulers import agent_path
    from spark_integration.settings import cluster_settings

    quick = args.quick
    scale = args.scale or (0.1 if quick else 1.0)
    num_jobs = args.jobs or (4 if quick else 20)
    load = args.load or (3.0 if quick else 1.5)
    repeats = args.repeats or (1 if quick else 3)
    trace_repeats = args.trace_repeats or (1 if quick else 2)
    settings = None if args.master is None else cluster_settings(args)
    if settings is not None:
        masters = [master_label(settings)]
    else:
        masters = (args.masters or ("local" if quick else "local,standalone")).split(",")
    executors = EXECUTORS if settings is None else settings.executors
    if args.drivers:
        drivers = [d for d in DRIVERS if d in args.drivers.split(",")]
    else:
        absent = [str(agent_path(m)) for m in masters if not agent_path(m).exists()]
        drivers = [d for d in DRIVERS if d != "agent" or not absent]
        if absent:
            missing.add("driver agent", f"no policy at {', '.join(absent)}; its targets fail")
    return StreamPlan(scale, num_jobs, load, repeats, trace_repeats, settings, masters,
                      executors, drivers)


def check_before_spark(args: argparse.Namespace, plan: StreamPlan) -> None:
    """Refuse now, not mid-run: a policy of another executor count, remote TPC-H data."""
    from spark_integration.schedulers import make_driver
    from spark_integration.tpch import is_local

    for name in plan.drivers:
        for master in plan.masters:
            make_driver(name, executors=plan.executors, master=master)
    if not is_local(args.data or ""):
        raise ValueError("--data: the benchmark reads a local (or mounted) TPC-H root; copy "
                         "remote data with `python -m spark_integration.run --data URI` first")


def run_all_masters(args: argparse.Namespace, plan: StreamPlan, unit_specs: list, tables: Any,
                    missing: Missing) -> Measured:
    """Each master in turn (its own session and work folder): its runs, then the executor
    model fitted on them."""
    from spark_integration.schedulers import agent_path
    from spark_integration.settings import user_conf

    measured = Measured([], [], {})
    with tempfile.TemporaryDirectory(prefix="pipesched-bench-") as work:
        for master in plan.masters:
            run = run_master(master, plan.drivers, unit_specs, plan.load, tables, plan.repeats,
                             plan.trace_repeats, plan.scale,
                             Path(work) / master.replace("@", "_"), args.partition_rule,
                             plan.settings, args.log_level,
                             None if plan.settings else user_conf(args))
            measured.rows += run.rows
            model, cal_rows = calibrate(master, run, missing)
            measured.calibration += cal_rows
            measured.per_master[master] = {
                "session": run.session, "mean_gap_s": run.gap_s, "trace_s": run.trace_s,
                "agent_policy": agent_path(master).name if "agent" in plan.drivers else None,
                "model": None if model is None else asdict(model),
                "node_times_s": run.times.to_json(), "runs": run.records,
                "workload": [{"name": s.name, "arrival_s": s.arrival_s} for s in run.specs]}
    return measured


def spark_real_markdown(args: argparse.Namespace, plan: StreamPlan, summary: list[dict],
                        ratios: list[dict], by_scheduler: list[dict], by_query: list[dict],
                        per_master: dict[str, dict[str, Any]], runtime_s: float,
                        load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    """The report's text: the protocol, the JCT summary, the paired ratios, the predictions."""
    from spark_integration.queries import QUERIES

    models = ", ".join(f"{m}: speed {v['model']['speed']:.2f}, contention "
                       f"{v['model']['contention']:.1f}, mean gap {v['mean_gap_s']:.2f} s"
                       for m, v in per_master.items() if v["model"])
    error_columns = ["jobs", "median_rel_error", "p90_rel_error", "max_rel_error",
                     "share_within_25pct", "sim_median_rel_error", "sim_share_within_25pct"]
    ratio_rows = [{**r, "per_repeat": " ".join(f"{v:.3f}" for v in r["per_repeat"])}
                  for r in ratios]
    return "\n".join([
        f"{plan.num_jobs} TPC-H jobs (scale {plan.scale:g}, queries drawn from all "
        f"{len(QUERIES)}), Poisson arrivals with mean gap = mean isolated job time (timed in "
        f"the same session) / {plan.load:g}, {plan.repeats} paired repeat(s) of every driver "
        f"in rotating order, {plan.executors} executors per master, partition rule "
        f"`{args.partition_rule}`; total runtime {runtime_s:.0f} s; load average (1 min) "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after.", "",
        "## Mean JCT and makespan (mean and 95% t-interval over paired repeats)", "",
        markdown_table(summary, ["master", "scheduler", "runs", "mean_jct_s", "jct_ci95_s",
                                 "makespan_s", "makespan_ci95_s", "pace_min", "pace_max",
                                 "failed_jobs", "decision_ms_median", "decision_ms_p99"],
                       ".2f"), "",
        "`pace`: the probe queries' time right before a run over their calibration time (1 = "
        "as fast as at calibration). `decision_ms`: wall time of the scheduler's act() per "
        "decision on the driver (median of runs' medians; the largest p99).", "",
        "## Target ratios per paired repeat", "",
        markdown_table(ratio_rows, ["master", "ratio", "repeats", "mean", "ci95", "threshold",
                                    "repeats_met", "per_repeat"], ".3f"), "",
        "## Predicted vs measured JCT per job (held-out runs)", "",
        f"Executor model fitted on each master's first `fair` run ({models}); rel_error "
        f"columns: executor model; sim_ columns: the task-level SparkDagShop simulator on the "
        f"same in-session templates.", "",
        markdown_table(by_scheduler, ["master", "scheduler", *error_columns]), "",
        markdown_table(by_query, ["master", "query", *error_columns]),
    ])


def benchmark(args: argparse.Namespace) -> None:
    from spark_integration.jobs import poisson_stream
    from spark_integration.queries import QUERIES
    from spark_integration.tpch import data_location, table_paths

    missing = Missing()
    plan = plan_stream(args, missing)
    check_before_spark(args, plan)
    started = time.monotonic()
    tables = table_paths(data_location(plan.scale, args.data))
    # unit mean gap; each master scales it by its own isolated job times
    unit_specs = poisson_stream(sorted(QUERIES), plan.num_jobs, 1.0,
                                np.random.default_rng(args.seed))
    print(f"{plan.num_jobs} jobs at scale {plan.scale:g}, load {plan.load:g}, drivers "
          f"{plan.drivers}, {plan.repeats} paired repeat(s), partition rule "
          f"{args.partition_rule}, load average {os.getloadavg()[0]:.2f}", flush=True)
    load_before = os.getloadavg()
    measured = run_all_masters(args, plan, unit_specs, tables, missing)
    load_after = os.getloadavg()
    rows, calibration = measured.rows, measured.calibration
    summary = summarize(rows)
    ratios, targets = ratio_targets(rows, plan.masters)
    targets["sim_jobs_within_25pct_of_measured"] = prediction_target(calibration, rows,
                                                                     plan.masters)
    runtime_s = time.monotonic() - started
    by_scheduler = error_summary(calibration, ["master", "scheduler"])
    by_query = error_summary(calibration, ["master", "query"])
    body = spark_real_markdown(args, plan, summary, ratios, by_scheduler, by_query,
                               measured.per_master, runtime_s, load_before, load_after)
    write_report(NAME, args.out, rows, targets, body,
                 extra={"summary": summary, "paired_ratios": ratios,
                        "calibration": calibration, "calibration_by_scheduler": by_scheduler,
                        "calibration_by_query": by_query, "masters": measured.per_master,
                        "runtime_s": runtime_s, "scale_factor": plan.scale, "load": plan.load,
                        "partition_rule": args.partition_rule, "missing": missing.entries,
                        "load_average": {"before": load_before, "after": load_after}})
    print(f"wrote {args.out}/{NAME}.json and .md in {runtime_s:.0f} s", flush=True)


if __name__ == "__main__":
    main()
