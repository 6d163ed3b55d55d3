"""Spark event logs -> SparkDagShop workload JSON (traces for the simulator).

    python -m spark_integration.tracegen --scale 0.1 [--queries q1,q3,...] \
        [--out data/spark_traces/tpch_sf0.1.json] [--master local[2]] [--repeats 1]
    python -m spark_integration.tracegen --event-log DIR_OR_FILE --out trace.json

The first form runs each TPC-H query DAG alone, node after node at full parallelism, with
Spark event logging on, then converts the log; the second converts an existing event log of
any pipesched run (nodes are found through their job group ``pipesched|<run>|<job>|<node>``).

Conversion: every task of every Spark stage of a node's jobs (successful attempts only)
becomes one task of the node's workload stage, with

- ``network_s``: shuffle fetch wait time (time blocked reading shuffle blocks);
- ``write_s``: shuffle write time;
- ``compute_s``: executor run time minus those two, plus deserialisation and result
  serialisation time;
- ``network_bytes``: shuffle bytes read (local + remote).

Parents are the node's DAG parents. Task metrics miss the driver's share of a node (query
planning, job submission, scheduler delay, file commit), so when the node's wall time was
measured (the first form) a *calibrated* trace scales each node's task phases by
``wall / simulated`` where ``simulated`` is the node's duration when its tasks are list-
scheduled on the run's executors; the ``calibration`` section of the JSON keeps both numbers.
"""

from __future__ import annotations

import argparse
import heapq
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from envs.spark_dag import Job, Stage, jobs_to_json
from spark_integration.nodes import NodeRunner
from spark_integration.queries import QUERIES, QueryDag
from spark_integration.tpch import ensure_tpch, scale_label, table_paths

GROUP_PREFIX = "pipesched"
DEFAULT_TRACE_DIR = Path("data/spark_traces")


@dataclass
class TaskSample:
    stage_id: int
    network_s: float
    compute_s: float
    write_s: float
    network_bytes: float


@dataclass
class NodeTrace:
    """Tasks of one node, keyed by the job group ``pipesched|<run>|<job>|<node>``."""

    run: str
    job: str
    node: str
    tasks: list[TaskSample] = field(default_factory=list)
    spark_stages: dict[int, list[int]] = field(default_factory=dict)  # stage -> Spark parents
    first_submit_ms: float = float("inf")
    last_complete_ms: float = 0.0


def _event_files(path: Path) -> list[Path]:
    """The files of an event log: a plain file, a rolling ``eventlog_v2_*`` directory, or a
    directory holding either."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"event log {path} does not exist")
    rolling = sorted(path.glob("events_*"), key=lambda p: int(p.name.split("_")[1]))
    if rolling:
        return rolling
    found: list[Path] = []
    for child in sorted(path.iterdir()):
        if child.is_dir() and child.name.startswith("eventlog_v2_"):
            found += _event_files(child)
        elif child.is_file() and not child.name.startswith("."):
            found.append(child)
    if not found:
        raise FileNotFoundError(f"no event log files under {path}")
    return found


def _read_events(files: Iterable[Path]) -> Iterable[dict[str, Any]]:
    for file in files:
        if file.suffix in (".zstd", ".zst", ".lz4", ".snappy", ".lzf"):
            raise ValueError(f"{file}: compressed event logs are not supported; run with "
                             f"spark.eventLog.compress=false")
        with file.open() as lines:
            for number, line in enumerate(lines, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    if file.name.endswith(".inprogress"):
                        break  # a live log may end mid-line
                    raise ValueError(f"{file}:{number}: invalid JSON ({error})") from None


def parse_event_log(path: str | Path) -> dict[str, NodeTrace]:
    """Group the successful tasks of an event log by pipesched node (job group)."""
    stage_owner: dict[int, NodeTrace] = {}
    job_owner: dict[int, NodeTrace] = {}
    nodes: dict[str, NodeTrace] = {}
    for event in _read_events(_event_files(Path(path))):
        kind = event.get("Event")
        if kind == "SparkListenerJobStart":
            group = (event.get("Properties") or {}).get("spark.jobGroup.id", "")
            parts = group.split("|")
            if len(parts) != 4 or parts[0] != GROUP_PREFIX:
                continue
            node = nodes.setdefault(group, NodeTrace(parts[1], parts[2], parts[3]))
            node.first_submit_ms = min(node.first_submit_ms, event["Submission Time"])
            job_owner[event["Job ID"]] = node
            for info in event.get("Stage Infos", []):
                stage_owner[info["Stage ID"]] = node
                node.spark_stages[info["Stage ID"]] = list(info.get("Parent IDs", []))
        elif kind == "SparkListenerJobEnd":
            node = job_owner.get(event.get("Job ID"))
            if node is not None:
                node.last_complete_ms = max(node.last_complete_ms, event["Completion Time"])
        elif kind == "SparkListenerTaskEnd":
            node = stage_owner.get(event.get("Stage ID"))
            reason = (event.get("Task End Reason") or {}).get("Reason")
            metrics = event.get("Task Metrics")
            if node is None or reason != "Success" or not metrics:
                continue
            read = metrics.get("Shuffle Read Metrics", {})
            written = metrics.get("Shuffle Write Metrics", {})
            network_s = read.get("Fetch Wait Time", 0) / 1e3
            write_s = written.get("Shuffle Write Time", 0) / 1e9
            run_s = metrics.get("Executor Run Time", 0) / 1e3
            overhead_s = (metrics.get("Executor Deserialize Time", 0)
                          + metrics.get("Result Serialization Time", 0)) / 1e3
            compute_s = max(run_s - network_s - write_s, 0.0) + overhead_s
            node.tasks.append(TaskSample(
                event["Stage ID"], network_s, compute_s, write_s,
                float(read.get("Remote Bytes Read", 0) + read.get("Local Bytes Read", 0))))
    return nodes


def list_schedule_s(durations: Sequence[float], executors: int) -> float:
    """Makespan of tasks placed in order on the first free of ``executors`` slots."""
    slots = [0.0] * max(1, executors)
    for duration in durations:
        heapq.heapreplace(slots, slots[0] + duration)
    return max(slots)


def node_stage(trace: NodeTrace | None, stage_id: int, parents: Sequence[int], name: str,
               wall_s: float | None = None, executors: int = 1,
               min_task_s: float = 1e-3) -> tuple[Stage, dict[str, float]]:
    """A workload stage from one node's tasks, optionally calibrated to its wall time."""
    tasks = trace.tasks if trace is not None and trace.tasks else []
    if not tasks:  # a node Spark answered from metadata alone: one short task
        tasks = [TaskSample(-1, 0.0, min_task_s, 0.0, 0.0)]
    network = np.array([t.network_s for t in tasks])
    compute = np.maximum(np.array([t.compute_s for t in tasks]), min_task_s)
    write = np.array([t.write_s for t in tasks])
    simulated = list_schedule_s(network + compute + write, executors)
    scale = 1.0
    if wall_s is not None and wall_s > 0:
        scale = wall_s / simulated
    stage = Stage(id=stage_id, parents=tuple(parents), num_tasks=len(tasks),
                  network_s=network * scale, compute_s=compute * scale, write_s=write * scale,
                  network_bytes=np.array([t.network_bytes for t in tasks]), name=name)
    info = {"tasks": len(tasks), "task_sum_s": float((network + compute + write).sum()),
            "simulated_s": simulated, "scale": scale}
    if wall_s is not None:
        info["wall_s"] = wall_s
    return stage, info


def query_job(dag: QueryDag, traces: dict[str, NodeTrace], job_name: str, run: str,
              walls: dict[str, float] | None = None, executors: int = 1,
              name: str | None = None) -> tuple[Job, dict[str, Any]]:
    """The workload job of one query run from its node traces."""
    index = {n.name: i for i, n in enumerate(dag.nodes)}
    stages, info = [], {}
    for i, node in enumerate(dag.nodes):
        trace = traces.get(f"{GROUP_PREFIX}|{run}|{job_name}|{node.name}")
        stage, info[node.name] = node_stage(
            trace, i, [index[p] for p in node.parents], node.name,
            None if walls is None else walls.get(node.name), executors)
        stages.append(stage)
    return Job(name or job_name, 0.0, stages), info


def load_templates(path: str | Path) -> dict[str, Job]:
    """Query name -> traced job (arrival 0) from a trace written by this module."""
    from envs.spark_dag import load_workload

    return {job.name.rsplit("/", 1)[-1]: job for job in load_workload(path)}


def default_trace_path(scale_factor: float) -> Path:
    return DEFAULT_TRACE_DIR / f"tpch_{scale_label(scale_factor)}.json"


def trace_run(repeat: int, parallelism: int) -> str:
    """The run label of an isolated timing's job groups."""
    return f"trace{repeat}p{parallelism}"


def time_nodes(runner: NodeRunner, dags: Sequence[QueryDag], levels: Sequence[int],
               repeats: int, work_dir: str | Path, quiet: bool = False,
               ) -> dict[tuple[str, int], dict[int, dict[str, float]]]:
    """Run each query alone, node after node, at each parallelism of ``levels``, ``repeats``
    times; ``(query, repeat) -> level -> node -> wall seconds``. Each node runs in the job group
    ``pipesched|<trace_run(repeat, level)>|<query>|<node>``, so an event log of the session
    can be converted with :func:`query_job`."""
    sc = runner.spark.sparkContext
    walls: dict[tuple[str, int], dict[int, dict[str, float]]] = {}
    for repeat in range(repeats):
        for dag in dags:
            by_level = walls.setdefault((dag.name, repeat), {})
            for level in levels:
                paths: dict[str, str] = {}
                by_level[level] = {}
                run = trace_run(repeat, level)
                for node in dag.nodes:
                    sc.setJobGroup(f"{GROUP_PREFIX}|{run}|{dag.name}|{node.name}",
                                   f"trace {dag.name}/{node.name}")
                    out_path = f"{work_dir}/{run}/{dag.name}/{node.name}"
                    started = time.monotonic()
                    runner.run(node, {p: paths[p] for p in node.parents}, out_path, level)
                    by_level[level][node.name] = time.monotonic() - started
                    paths[node.name] = out_path
                shutil.rmtree(f"{work_dir}/{run}/{dag.name}", ignore_errors=True)
            if not quiet:
                print(f"timed {dag.name} run {repeat}: " + ", ".join(
                    f"p{level} {sum(by_level[level].values()):.2f} s" for level in levels),
                    flush=True)
    sc.setJobGroup("", "")
    return walls


def calibrated_jobs(event_log: str | Path, dags: Sequence[QueryDag],
                    walls: dict[tuple[str, int], dict[str, float]], repeats: int, executors: int,
                    prefix: str) -> tuple[list[Job], dict[str, Any]]:
    """Calibrated workload jobs (named ``<prefix>/<query>``) from the event log of
    :func:`time_nodes` runs at parallelism ``executors``: per query the repeat with the median
    total wall time; ``walls`` is ``(query, repeat) -> node -> seconds``."""
    traces = parse_event_log(event_log)
    jobs, calibration = [], {}
    for dag in dags:
        totals = sorted(range(repeats), key=lambda r: sum(walls[(dag.name, r)].values()))
        keep = totals[len(totals) // 2]
        job, info = query_job(dag, traces, dag.name, trace_run(keep, executors),
                              walls[(dag.name, keep)], executors, name=f"{prefix}/{dag.name}")
        jobs.append(job)
        calibration[dag.name] = info
    return jobs, calibration


def trace_queries(scale_factor: float, queries: Sequence[str], out: str | Path,
                  master: str = "local[2]", event_log_dir: str | Path | None = None,
                  repeats: int = 1, cache_dir: str | Path | None = None) -> Path:
    """Run each query alone with event logging on; write the calibrated trace to ``out``.

    With ``repeats > 1`` each query runs that many times and the run with the median total
    wall time is kept (the first run of a fresh JVM is slow)."""
    from spark_integration.session import build_session, executors_of_master

    dags = [QUERIES[q] for q in queries]
    data_dir = ensure_tpch(scale_factor, *(() if cache_dir is None else (cache_dir,)))
    log_dir = Path(event_log_dir or tempfile.mkdtemp(prefix="pipesched-eventlog-"))
    executors = executors_of_master(master) or 2
    spark = build_session(master, app_name="pipesched-tracegen", event_log_dir=log_dir,
                          max_executors=executors,
                          conf={"spark.eventLog.compress": "false",
                                "spark.eventLog.rolling.enabled": "false"})
    app_id = spark.sparkContext.applicationId
    runner = NodeRunner(spark, table_paths(data_dir))
    with tempfile.TemporaryDirectory(prefix="pipesched-trace-") as work:
        runner.run_query(QUERIES["q6"], work)  # warm the JVM before anything is measured
        timed = time_nodes(runner, dags, [executors], repeats, work)
    walls = {(q, r): by_level[executors] for (q, r), by_level in timed.items()}
    spark.stop()
    log_files = [p for p in log_dir.iterdir() if app_id in p.name]
    if not log_files:
        raise FileNotFoundError(f"no event log for {app_id} in {log_dir}")
    jobs, calibration = calibrated_jobs(log_files[0], dags, walls, repeats, executors,
                                        f"tpch-{scale_label(scale_factor)}")
    payload = jobs_to_json(jobs)
    payload["source"] = {"scale_factor": scale_factor, "master": master,
                         "executors": executors, "event_log": str(log_files[0]),
                         "repeats": repeats}
    payload["calibration"] = calibration
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
    return out


def convert_event_log(event_log: str | Path, out: str | Path, executors: int = 1) -> Path:
    """Convert any pipesched event log to workload JSON: one job per (run, job), uncalibrated."""
    traces = parse_event_log(event_log)
    if not traces:
        raise ValueError(f"{event_log}: no jobs with a pipesched job group "
                         f"({GROUP_PREFIX}|<run>|<job>|<node>)")
    by_job: dict[tuple[str, str], list[NodeTrace]] = defaultdict(list)
    for trace in traces.values():
        by_job[(trace.run, trace.job)].append(trace)
    jobs = []
    for (run, job_name), nodes in sorted(by_job.items()):
        query = job_name.split("#")[0]
        dag = QUERIES.get(query)
        if dag is None:  # not a known query: nodes in first-seen order, no parents known
            stages = [node_stage(t, i, [], t.node)[0] for i, t in enumerate(nodes)]
            jobs.append(Job(f"{run}/{job_name}", 0.0, stages))
            continue
        job, _ = query_job(dag, traces, job_name, run, executors=executors,
                           name=f"{run}/{job_name}")
        jobs.append(job)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(jobs_to_json(jobs), indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_integration.tracegen",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.1, help="TPC-H scale factor")
    parser.add_argument("--queries", default=",".join(QUERIES),
                        help="comma-separated query names")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--event-log", help="convert this existing event log instead")
    parser.add_argument("--event-log-dir", help="where to keep the event log of a new run")
    parser.add_argument("--out", help="output workload JSON")
    args = parser.parse_args(argv)
    try:
        if args.event_log:
            out = convert_event_log(args.event_log, args.out or "trace.json")
        else:
            queries = [q for q in args.queries.split(",") if q]
            unknown = [q for q in queries if q not in QUERIES]
            if unknown:
                raise ValueError(f"unknown queries {unknown}; known: {sorted(QUERIES)}")
            out = trace_queries(args.scale, queries, args.out or default_trace_path(args.scale),
                                args.master, args.event_log_dir, args.repeats)
    except (OSError, ValueError) as error:
        print(f"tracegen: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
