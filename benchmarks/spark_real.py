"""Live Spark: pipesched schedulers against Spark's own FIFO and FAIR on a TPC-H job stream.

    python -m benchmarks.spark_real [--quick] [--out DIR] [--scale 1] [--jobs 20]
        [--repeats 3] [--trace-repeats 2] [--masters local,standalone] [--load 1.5] [--seed 0]

Per master (``local[2]``, and a 2-worker x 1-core standalone cluster on 127.0.0.1), in ONE
SparkSession with event logging on:

1. a warm-up batch (class loading, JIT);
2. in-session calibration: every query of the stream runs alone, node after node, at each
   parallelism 1..E, ``--trace-repeats`` times; the median node wall times
   (:class:`spark_integration.calibration.NodeTimes`) and the session's event log converted
   to calibrated templates (:func:`spark_integration.tracegen.calibrated_jobs`) are what the
   schedulers observe and what the predictions use;
3. the job stream (queries drawn uniformly, Poisson arrivals with mean gap = mean isolated
   job time at full parallelism / ``--load``) runs ``--repeats`` times under each driver:
   ``spark-fifo`` (every node submitted as soon as it is ready into Spark's FIFO queue, the
   FAIR session's ``default`` pool), ``spark-fair`` (likewise, one FAIR pool per job), and
   pipesched ``fair``, ``sjf``, ``contention_free`` and the shipped agent through
   :class:`spark_integration.DagExecutor`; driver order rotates between repeats.

Prediction: the executor model (:func:`spark_integration.calibration.predict_live`) is fitted
(``speed``, ``contention``) on the master's first ``fair`` run; every other pipesched run is
held out and each job's predicted JCT is compared with the measured one. The task-level
SparkDagShop simulator's prediction on the same templates is reported next to it.

Targets: best pipesched mean JCT at least 20% below Spark FIFO's (ratio <= 0.8) per master;
every held-out job's predicted JCT within 25% of the measured one (share of jobs = 1.0).
``--quick``: scale 0.1, 4 jobs at load 3, 1 repeat, 1 timing, local[2] only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import markdown_table, parse_args, target, write_report

NAME = "spark_real"
PIPESCHED = ["fair", "sjf", "contention_free", "agent"]
DRIVERS = ["spark-fifo", "spark-fair", *PIPESCHED]
EXECUTORS = 2
# timed alone right before every run: the machine's pace then vs at calibration time
PROBE = ("q6", "q12", "q14")


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


def _session(master: str, state_dir: Path, event_log_dir: Path):
    from spark_integration import cluster
    from spark_integration.session import build_session, wait_for_executors

    conf = {"spark.eventLog.compress": "false", "spark.eventLog.rolling.enabled": "false"}
    if master == "local":
        return build_session("local[2]", app_name="pipesched-bench", max_executors=EXECUTORS,
                             event_log_dir=event_log_dir, conf=conf), None
    info = cluster.up(workers=2, cores=1, memory="1g", state_dir=state_dir)
    spark = build_session(info.master_url, app_name="pipesched-bench", max_executors=EXECUTORS,
                          event_log_dir=event_log_dir,
                          conf={**conf, "spark.executor.memory": "512m",
                                "spark.executor.cores": "1", "spark.cores.max": str(EXECUTORS)})
    wait_for_executors(spark, 2)
    return spark, info


def calibrate_in_session(spark, tables, queries: Sequence[str], repeats: int, work: Path,
                         event_log_dir: Path, label: str):
    """Time every query alone, node after node, at each parallelism 1..E in this session, and
    turn the session's event log into calibrated templates (full parallelism, median repeat)."""
    from spark_integration.calibration import NodeTimes
    from spark_integration.nodes import NodeRunner
    from spark_integration.queries import QUERIES
    from spark_integration.tracegen import calibrated_jobs, time_nodes

    dags = [QUERIES[q] for q in queries]
    timed = time_nodes(NodeRunner(spark, tables), dags, range(1, EXECUTORS + 1), repeats, work)
    app_id = spark.sparkContext.applicationId
    logs = [p for p in event_log_dir.iterdir() if app_id in p.name]
    if not logs:
        raise FileNotFoundError(f"no event log of {app_id} in {event_log_dir}")
    walls = {key: by_level[EXECUTORS] for key, by_level in timed.items()}
    jobs, _ = calibrated_jobs(logs[0], dags, walls, repeats, EXECUTORS, label)
    templates = {job.name.rsplit("/", 1)[-1]: job for job in jobs}
    return NodeTimes.from_timings(timed), templates


def run_master(master: str, drivers: Sequence[str], unit_specs, load: float, tables,
               repeats: int, trace_repeats: int, scale: float, work: Path) -> MasterRun:
    from spark_integration import cluster
    from spark_integration.calibration import pace_of
    from spark_integration.executor import DagExecutor, latency_summary_ms
    from spark_integration.jobs import JobSpec, batch
    from spark_integration.nodes import NodeRunner
    from spark_integration.queries import QUERIES
    from spark_integration.schedulers import make_driver
    from spark_integration.tracegen import time_nodes

    rows: list[dict[str, Any]] = []
    live_runs: list[tuple] = []
    records: list[dict[str, Any]] = []
    event_log_dir = work / "eventlog"
    spark, info = _session(master, work / "cluster", event_log_dir)
    try:
        # warm the JVMs (class loading, JIT) so neither the timing nor the first driver pays it
        DagExecutor(spark, None, tables=tables, work_dir=work / "warmup", progress=False).run(
            batch(["q3", "q12", "q14", "q18"]))
        started = time.monotonic()
        queries = sorted({s.dag.name for s in unit_specs} | set(PROBE))
        times, templates = calibrate_in_session(spark, tables, queries, trace_repeats,
                                                work / "trace", event_log_dir,
                                                f"{master}-sf{scale:g}")
        trace_s = time.monotonic() - started
        gap = float(np.mean([times.job_s(s.dag.name, EXECUTORS) for s in unit_specs])) / load
        specs = [JobSpec(s.name, s.dag, round(s.arrival_s * gap, 3)) for s in unit_specs]
        print(f"{master}: timed {len(queries)} queries in {trace_s:.0f} s; mean gap "
              f"{gap:.2f} s", flush=True)
        runner = NodeRunner(spark, tables)
        for rep in range(repeats):
            order = list(drivers[rep % len(drivers):]) + list(drivers[:rep % len(drivers)])
            for name in order:
                probe = time_nodes(runner, [QUERIES[q] for q in PROBE], [EXECUTORS], 1,
                                   work / "probe", quiet=True)
                pace = pace_of(times, {q: walls[EXECUTORS] for (q, _), walls in probe.items()},
                               EXECUTORS)
                driver = make_driver(name, executors=EXECUTORS)
                executor = DagExecutor(spark, driver.scheduler, tables=tables,
                                       work_dir=work / "runs", limits=driver.limits,
                                       templates=templates, native_pools=driver.native_pools,
                                       name=name, progress=False)
                result = executor.run(specs)
                row = {"master": master, "scheduler": name, "repeat": rep,
                       "mean_jct_s": result.mean_jct_s, "makespan_s": result.makespan_s,
                       "jobs": len(result.jobs), "failed_jobs": len(result.failed),
                       "decisions": result.decisions, "invalid_actions": result.invalid_actions,
                       "executors_seen": sorted(set(result.executor_counts)), "pace": pace,
                       "wall_s": result.wall_s,
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
        spark.stop()
        if info is not None:
            cluster.down(work / "cluster")
    return MasterRun(rows, live_runs, records, specs, gap, times, templates, trace_s)


def calibrate(master: str, run: MasterRun, fit_on: str = "fair"
              ) -> tuple[Any, list[dict[str, Any]]]:
    """Fit the executor model on the first ``fit_on`` run of ``master``, then predict every
    pipesched run's jobs with it and with the task-level SparkDagShop simulator."""
    from spark_integration.calibration import (
        LiveModel,
        compare,
        fit_live_model,
        predict_live,
        simulate,
        workload_for,
    )
    from spark_integration.schedulers import make_driver

    fitting = [r for r in run.live_runs if r[0] == fit_on][:1] or list(run.live_runs[:1])
    if not fitting:
        return None, []
    result0, pace0 = fitting[0][2], fitting[0][4]
    model = fit_live_model([result0], run.times, [pace0])
    workload = workload_for(run.specs, run.templates)
    rows = []
    for name, rep, result, limits, pace in run.live_runs:
        paced = LiveModel(model.speed * pace, model.contention)
        executor_model = predict_live(run.specs, run.times, run.templates,
                                      make_driver(name).scheduler, limits, EXECUTORS, paced)
        task_level = simulate(workload, make_driver(name).scheduler, EXECUTORS, limits)
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
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["master"], row["scheduler"])].append(row)
    out = []
    for (master, name), group in groups.items():
        jct = np.array([r["mean_jct_s"] for r in group])
        span = np.array([r["makespan_s"] for r in group])
        out.append({"master": master, "scheduler": name, "runs": len(group),
                    "mean_jct_s": float(jct.mean()), "jct_std_s": float(jct.std()),
                    "makespan_s": float(span.mean()), "makespan_std_s": float(span.std()),
                    "failed_jobs": int(sum(r["failed_jobs"] for r in group)),
                    "decision_ms_median": float(np.median(
                        [r["decision_ms"].get("median", np.nan) for r in group])),
                    "decision_ms_p99": float(np.max(
                        [r["decision_ms"].get("p99", np.nan) for r in group]))})
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}")
    parser.add_argument("--scale", type=float, help="TPC-H scale factor (default 1; quick 0.1)")
    parser.add_argument("--jobs", type=int, help="jobs in the stream (default 20; quick 4)")
    parser.add_argument("--repeats", type=int, help="runs per driver (default 3; quick 1)")
    parser.add_argument("--trace-repeats", type=int,
                        help="isolated timings per query and parallelism (default 2; quick 1)")
    parser.add_argument("--masters", help="local,standalone (quick: local)")
    parser.add_argument("--load", type=float,
                        help="mean isolated job time / mean gap (default 1.5; quick 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parse_args(NAME, argv, parser)
    from spark_integration.jobs import poisson_stream
    from spark_integration.queries import QUERIES
    from spark_integration.schedulers import DEFAULT_AGENT
    from spark_integration.tpch import ensure_tpch, table_paths

    quick = args.quick
    scale = args.scale or (0.1 if quick else 1.0)
    num_jobs = args.jobs or (4 if quick else 20)
    load = args.load or (3.0 if quick else 1.5)
    repeats = args.repeats or (1 if quick else 3)
    trace_repeats = args.trace_repeats or (1 if quick else 2)
    masters = (args.masters or ("local" if quick else "local,standalone")).split(",")
    unknown = [m for m in masters if m not in ("local", "standalone")]
    if unknown:
        parser.error(f"unknown masters {unknown}: use local and/or standalone")
    drivers = [d for d in DRIVERS if d != "agent" or DEFAULT_AGENT.exists()]
    started = time.monotonic()
    tables = table_paths(ensure_tpch(scale))
    # unit mean gap; each master scales it by its own isolated job times
    unit_specs = poisson_stream(sorted(QUERIES), num_jobs, 1.0, np.random.default_rng(args.seed))
    print(f"{num_jobs} jobs at scale {scale:g}, load {load:g}, drivers {drivers}", flush=True)
    rows: list[dict[str, Any]] = []
    calibration: list[dict[str, Any]] = []
    per_master: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="pipesched-bench-") as work:
        for master in masters:
            run = run_master(master, drivers, unit_specs, load, tables, repeats, trace_repeats,
                             scale, Path(work) / master)
            rows += run.rows
            model, cal_rows = calibrate(master, run)
            calibration += cal_rows
            per_master[master] = {
                "mean_gap_s": run.gap_s, "trace_s": run.trace_s,
                "model": None if model is None else asdict(model),
                "node_times_s": run.times.to_json(), "runs": run.records,
                "workload": [{"name": s.name, "arrival_s": s.arrival_s} for s in run.specs]}
    summary = summarize(rows)
    targets: dict[str, dict[str, Any]] = {}
    for master in masters:
        by_name = {s["scheduler"]: s for s in summary if s["master"] == master}
        best = min((by_name[n] for n in PIPESCHED if n in by_name), key=lambda s: s["mean_jct_s"])
        ratio = best["mean_jct_s"] / by_name["spark-fifo"]["mean_jct_s"]
        targets[f"best_pipesched_jct_over_spark_fifo_{master}"] = target(ratio, 0.8, "<=")
    held_out = np.array([c["rel_error"] for c in calibration if c["held_out"]] or [np.inf])
    targets["sim_jobs_within_25pct_of_measured"] = target(float(np.mean(held_out <= 0.25)),
                                                          1.0, ">=")
    runtime_s = time.monotonic() - started
    by_scheduler = error_summary(calibration, ["master", "scheduler"])
    by_query = error_summary(calibration, ["master", "query"])
    models = ", ".join(f"{m}: speed {v['model']['speed']:.2f}, contention "
                       f"{v['model']['contention']:.1f}, mean gap {v['mean_gap_s']:.2f} s"
                       for m, v in per_master.items() if v["model"])
    error_columns = ["jobs", "median_rel_error", "p90_rel_error", "max_rel_error",
                     "share_within_25pct", "sim_median_rel_error", "sim_share_within_25pct"]
    body = "\n".join([
        f"{num_jobs} TPC-H jobs (scale {scale:g}, queries drawn from all {len(QUERIES)}), "
        f"Poisson arrivals with mean gap = mean isolated job time (timed in the same session) / "
        f"{load:g}, {repeats} run(s) per driver, {EXECUTORS} executors per master; "
        f"total runtime {runtime_s:.0f} s.", "",
        "## Mean JCT and makespan (mean and std over runs)", "",
        markdown_table(summary, ["master", "scheduler", "runs", "mean_jct_s", "jct_std_s",
                                 "makespan_s", "makespan_std_s", "failed_jobs",
                                 "decision_ms_median", "decision_ms_p99"], ".2f"), "",
        "`decision_ms`: wall time of the scheduler's act() per decision on the driver (median "
        "of runs' medians; the largest p99).", "",
        "## Predicted vs measured JCT per job (held-out runs)", "",
        f"Executor model fitted on each master's first `fair` run ({models}); rel_error "
        f"columns: executor model; sim_ columns: the task-level SparkDagShop simulator on the "
        f"same in-session templates.", "",
        markdown_table(by_scheduler, ["master", "scheduler", *error_columns]), "",
        markdown_table(by_query, ["master", "query", *error_columns]),
    ])
    write_report(NAME, args.out, rows, targets, body,
                 extra={"summary": summary, "calibration": calibration,
                        "calibration_by_scheduler": by_scheduler,
                        "calibration_by_query": by_query, "masters": per_master,
                        "runtime_s": runtime_s, "scale_factor": scale, "load": load})
    print(f"wrote {args.out}/{NAME}.json and .md in {runtime_s:.0f} s", flush=True)


if __name__ == "__main__":
    main()
