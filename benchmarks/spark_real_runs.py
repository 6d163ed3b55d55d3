"""Running the benchmark's paired streams on one master: the streams and their order, the
session, the pace check around every run, the runs themselves, and the executor model fitted on
them with its predictions (the protocol: :mod:`benchmarks.spark_real`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import Missing

#: E of the masters this run starts when ``--executors`` is not given
EXECUTORS = 2
TASKS_PER_EXECUTOR = 2
# timed alone right before every run: the machine's pace then vs at calibration time
PROBE = ("q6", "q12", "q14")
PARTITION_RULES = ("fixed", "parallelism")
PACE_TOLERANCE = 0.25
REFERENCE_PROBES = 3
COUNTED, RE_RUN, EXCLUDED = "counted", "disturbed, re-run", "disturbed twice, excluded"
SHADOW = "sjf"  # the rule the agent's decisions are compared with, at the agent's own states


@dataclass(frozen=True)
class Stream:
    """One job stream: queries and unit-gap Poisson arrivals drawn from ``seed``; a master
    scales the gaps to its own mean isolated job time / ``load``."""

    seed: int
    load: float
    unit_specs: tuple  # spark_integration.jobs.JobSpec at mean gap 1

    @property
    def key(self) -> tuple[float, int]:
        return self.load, self.seed


def plan_streams(seeds: Sequence[int], loads: Sequence[float], num_jobs: int) -> list[Stream]:
    """Every (load, seed), load by load; a seed draws the same queries and unit arrivals at
    every load."""
    from spark_integration.jobs import poisson_stream
    from spark_integration.queries import QUERIES

    return [Stream(seed, load, tuple(poisson_stream(sorted(QUERIES), num_jobs, 1.0,
                                                    np.random.default_rng(seed))))
            for load in loads for seed in seeds]


def run_order(streams: Sequence[Stream], drivers: Sequence[str], repeats: int
              ) -> list[tuple[int, Stream, list[str]]]:
    """The paired blocks in the order they run, ``(repeat, stream, drivers in order)``: repeat
    by repeat, every stream's drivers back to back, the order rotated by one per block."""
    blocks = []
    for repeat in range(repeats):
        for index, stream in enumerate(streams):
            shift = (repeat + index) % len(drivers)
            blocks.append((repeat, stream, [*drivers[shift:], *drivers[:shift]]))
    return blocks


def stream_gap_s(times: Any, stream: Stream, executors: int) -> float:
    """Mean gap of ``stream`` on a master: its jobs' mean isolated time at parallelism
    ``executors`` (``times``: that master's NodeTimes) over the load."""
    return float(np.mean([times.job_s(s.dag.name, executors) for s in stream.unit_specs])
                 ) / stream.load


def pace_disturbed(drift: float, tolerance: float) -> bool:
    """The probe ran more than ``1 + tolerance`` times slower or faster than the session's
    reference (``drift`` = pace / reference pace; NaN counts as disturbed)."""
    return not 1.0 / (1.0 + tolerance) <= drift <= 1.0 + tolerance


def run_checked(attempt: Callable[[int], dict[str, Any]], tolerance: float,
                reference_pace: float = 1.0) -> list[dict[str, Any]]:
    """One driver's run in a paired block, with the pace check: ``attempt(0)`` (probe, then the
    run; a row with its ``pace``), once more when its drift (pace / ``reference_pace``) is
    disturbed; every attempt's row with ``drift``, ``attempt``, ``disturbed``, ``status`` and
    ``counted``."""
    rows = []
    for number in range(2):
        row = attempt(number)
        drift = row["pace"] / reference_pace
        disturbed = pace_disturbed(drift, tolerance)
        status = COUNTED if not disturbed else (RE_RUN if number == 0 else EXCLUDED)
        row.update(drift=drift, attempt=number, disturbed=disturbed, status=status,
                   counted=status == COUNTED)
        rows.append(row)
        if not disturbed:
            break
    return rows


@dataclass
class LiveRun:
    """A pipesched run the executor model is fitted on or predicts; ``row`` is its measured
    row (``counted`` says whether it entered the ratios)."""

    name: str
    repeat: int
    result: Any  # spark_integration.executor.RunResult
    limits: Any
    pace: float
    specs: list
    row: dict[str, Any]


@dataclass
class MasterRun:
    """One master's part of the benchmark: the measured rows, the pipesched runs for the
    calibration, the in-session calibration data and each stream's scaled jobs and gap."""

    rows: list[dict[str, Any]]
    live_runs: list[LiveRun]
    records: list[dict[str, Any]]
    specs: dict[tuple[float, int], list]
    gaps_s: dict[tuple[float, int], float]
    times: Any  # spark_integration.calibration.NodeTimes
    templates: dict[str, Any]
    trace_s: float
    executors: int
    fixed_partitions: int | None
    session: dict[str, Any]


@dataclass
class Bench:
    """What every run on one master shares: the session and its calibration."""

    spark: Any
    master: str
    tables: Any
    times: Any
    templates: dict[str, Any]
    executors: int
    fixed_partitions: int | None
    partition_rule: str
    work: Path


def _session(master: str, executors: int, state_dir: Path, event_log_dir: Path, settings=None,
             log_level: str | None = None, extra_conf: dict[str, str] | None = None):
    """The session for ``master`` (``local[executors]``, ``standalone`` with ``executors``
    workers started here with ``extra_conf`` on top, or the cluster of ``settings``) with a
    pool ladder of levels 1..E, the cluster this run started (or None) and E."""
    from spark_integration import cluster
    from spark_integration.calibration import EVENT_LOG_CONF
    from spark_integration.session import build_session, wait_for_executors
    from spark_integration.settings import STANDALONE, manager_conf

    conf = {**EVENT_LOG_CONF, **(extra_conf or {})}
    if settings is not None:
        executors = settings.executors
    common = {"app_name": "pipesched-bench", "max_executors": executors,
              "pool_levels": range(1, executors + 1), "event_log_dir": event_log_dir,
              "shuffle_partitions": TASKS_PER_EXECUTOR * executors, "log_level": log_level}
    if settings is not None:
        spark = build_session(settings.master, conf={**conf, **settings.conf},
                              start_timeout_s=settings.start_timeout_s, **common)
        wait_for_executors(spark, settings.processes)
        return spark, None, executors
    if master == "local":
        return build_session(f"local[{executors}]", conf=conf, **common), None, executors
    if master != "standalone":
        raise ValueError(f"master {master!r}: use local, standalone or a cluster's settings")
    info = cluster.up(workers=executors, cores=1, memory="1g", state_dir=state_dir)
    try:
        spark = build_session(info.master_url,
                              conf={**manager_conf(STANDALONE, executors, 1, "512m"), **conf},
                              **common)
        wait_for_executors(spark, executors)
    except BaseException:  # deliberate: cleanup of the cluster started here, then re-raised
        cluster.down(state_dir)
        raise
    return spark, info, executors


def probe_pace(bench: Bench) -> float:
    """Time :data:`PROBE` alone at parallelism E now; its wall time over its calibration time."""
    from spark_integration.calibration import pace_of
    from spark_integration.nodes import NodeRunner
    from spark_integration.queries import QUERIES
    from spark_integration.tracegen import time_nodes

    probe = time_nodes(NodeRunner(bench.spark, bench.tables), [QUERIES[q] for q in PROBE],
                       [bench.executors], 1, bench.work / "probe", quiet=True,
                       partition_level=bench.executors if bench.fixed_partitions else None)
    return pace_of(bench.times, {q: walls[bench.executors] for (q, _), walls in probe.items()},
                   bench.executors)


def measure(bench: Bench, name: str, stream: Stream, repeat: int, specs: list,
            run: MasterRun) -> Callable[[int], dict[str, Any]]:
    """``attempt(number)`` for :func:`run_checked`: probe, run ``name`` on ``specs``, keep the
    record (and the live run) in ``run``, return the measured row."""
    from heuristics.spark_dag import make_heuristic
    from spark_integration.executor import DagExecutor, latency_summary_ms
    from spark_integration.schedulers import make_driver

    def attempt(number: int) -> dict[str, Any]:
        pace = probe_pace(bench)
        driver = make_driver(name, executors=bench.executors, master=bench.master)
        shadow = make_heuristic(SHADOW) if name == "agent" else None
        executor = DagExecutor(bench.spark, driver.scheduler, tables=bench.tables,
                               work_dir=bench.work / "runs", limits=driver.limits,
                               templates=bench.templates, native_pools=driver.native_pools,
                               name=name, progress=False,
                               fixed_partitions=bench.fixed_partitions,
                               tasks_per_executor=TASKS_PER_EXECUTOR, shadow=shadow)
        result = executor.run(specs)
        row = {"master": bench.master, "load": stream.load, "seed": stream.seed,
               "scheduler": name, "repeat": repeat, "mean_jct_s": result.mean_jct_s,
               "makespan_s": result.makespan_s, "jobs": len(result.jobs),
               "failed_jobs": len(result.failed), "decisions": result.decisions,
               "invalid_actions": result.invalid_actions,
               "executors_seen": sorted(set(result.executor_counts)), "pace": pace,
               "wall_s": result.wall_s, "partition_rule": bench.partition_rule,
               "decision_ms": latency_summary_ms(result.decision_latency_s),
               **({"shadow": asdict(result.shadow)} if result.shadow else {})}
        run.records.append({"master": bench.master, "load": stream.load, "seed": stream.seed,
                            "repeat": repeat, "attempt": number, **result.to_json()})
        if driver.scheduler is not None:
            run.live_runs.append(LiveRun(name, repeat, result, driver.limits, pace, specs, row))
        print(f"{bench.master:10s} load {stream.load:g} seed {stream.seed} rep {repeat} "
              f"{name:16s} mean JCT {result.mean_jct_s:7.2f} s makespan "
              f"{result.makespan_s:7.2f} s failed {len(result.failed)} pace {pace:.2f}",
              flush=True)
        return row

    return attempt


def run_master(master: str, drivers: Sequence[str], streams: Sequence[Stream], tables,
               repeats: int, trace_repeats: int, scale: float, work: Path,
               partition_rule: str = "fixed", settings=None, log_level: str | None = None,
               extra_conf: dict[str, str] | None = None,
               pace_tolerance: float = PACE_TOLERANCE, executors: int = EXECUTORS
               ) -> MasterRun:
    """Warm-up, calibration and ``repeats`` paired repeats of every driver on every stream of
    ``master`` (protocol: :mod:`benchmarks.spark_real`); ``settings`` (a
    :class:`spark_integration.settings.ClusterSettings`) for a cluster this run did not start
    (its executors replace ``executors``)."""
    from spark_integration.calibration import calibrate_in_session
    from spark_integration.executor import DagExecutor
    from spark_integration.jobs import JobSpec, batch
    from spark_integration.session import stop_session

    if partition_rule not in PARTITION_RULES:
        raise ValueError(f"partition rule {partition_rule!r}: use one of {PARTITION_RULES}")
    event_log_dir = work / "eventlog"
    spark, info, executors = _session(master, executors, work / "cluster", event_log_dir,
                                      settings, log_level, extra_conf)
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
        queries = sorted({s.dag.name for stream in streams for s in stream.unit_specs}
                         | set(PROBE))
        times, templates = calibrate_in_session(
            spark, tables, queries, trace_repeats, work / "trace", event_log_dir,
            f"{master}-sf{scale:g}", executors, executors if fixed else None)
        trace_s = time.monotonic() - started
        gaps = {s.key: stream_gap_s(times, s, executors) for s in streams}
        specs = {s.key: [JobSpec(j.name, j.dag, round(j.arrival_s * gaps[s.key], 3))
                         for j in s.unit_specs] for s in streams}
        print(f"{master}: timed {len(queries)} queries in {trace_s:.0f} s; mean gaps "
              + ", ".join(f"load {load:g} seed {seed}: {gap:.2f} s"
                          for (load, seed), gap in gaps.items())
              + f"; partitions per node: {fixed or 'by parallelism'}", flush=True)
        run = MasterRun([], [], [], specs, gaps, times, templates, trace_s, executors, fixed,
                        session)
        bench = Bench(spark, master, tables, times, templates, executors, fixed,
                      partition_rule, work)
        reference = float(np.median([probe_pace(bench) for _ in range(REFERENCE_PROBES)]))
        session["reference_pace"] = reference
        print(f"{master}: reference pace {reference:.2f} (median of {REFERENCE_PROBES} probes)",
              flush=True)
        for repeat, stream, order in run_order(streams, drivers, repeats):
            for name in order:
                run.rows += run_checked(
                    measure(bench, name, stream, repeat, specs[stream.key], run),
                    pace_tolerance, reference)
    finally:
        stop_session(spark)
        if info is not None:
            from spark_integration import cluster

            cluster.down(work / "cluster")
    return run


def calibrate(master: str, run: MasterRun, missing: Missing, fit_on: str = "fair"
              ) -> tuple[Any, list[dict[str, Any]]]:
    """Fit the executor model on the first counted ``fit_on`` run of ``master``, then predict
    every pipesched run's jobs (each on its own stream, under the runs' partition rule) with it
    and with the task-level SparkDagShop simulator. Without such a run with a finished node
    there is no model: a ``MISSING`` line, no rows."""
    from envs.spark_dag.live import PartitionRule
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

    fitting = [r for r in run.live_runs if r.name == fit_on and r.row["counted"]][:1]
    if not fitting or not len(node_samples(fitting[0].result, run.times)):
        missing.add(f"executor model on {master}",
                    f"no counted `{fit_on}` run with a finished node to fit it on")
        return None, []
    first = fitting[0]
    model = fit_live_model([first.result], run.times, [first.pace])
    partitions = PartitionRule(run.fixed_partitions, TASKS_PER_EXECUTOR)
    rows = []
    for live in run.live_runs:
        paced = LiveModel(model.speed * live.pace, model.contention)
        executor_model = predict_live(live.specs, run.times, run.templates,
                                      make_driver(live.name, master=master).scheduler,
                                      live.limits, run.executors, paced, partitions)
        task_level = simulate(workload_for(live.specs, run.templates),
                              make_driver(live.name, master=master).scheduler,
                              run.executors, live.limits)
        by_job = {c["job"]: c for c in compare(live.result, task_level)}
        for c in compare(live.result, executor_model):
            sim = by_job[c["job"]]
            rows.append({"master": master, "load": live.row["load"], "seed": live.row["seed"],
                         "scheduler": live.name, "repeat": live.repeat,
                         "attempt": live.row["attempt"], "counted": live.row["counted"],
                         "held_out": live is not first, "pace": live.pace, **c,
                         "query": c["job"].split("#")[0],
                         "simulator_jct_s": sim["predicted_jct_s"],
                         "simulator_rel_error": sim["rel_error"]})
    return model, rows


