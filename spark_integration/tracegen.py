"""Spark event logs -> SparkDagShop workload JSON (traces for the simulator).

    python -m spark_integration.tracegen --scale 0.1 [--queries q1,q3,...] \
        [--out results/spark_traces/tpch_sf0.1.json] [--master local[2]] [--repeats 1]
    python -m spark_integration.tracegen --scale 0.1 --master local --executor-counts 1,2 \
        --repeats 3 --out data/spark_traces/tpch_sf0.1_local_e1-2.json --force
    python -m spark_integration.tracegen --event-log DIR_OR_FILE --out trace.json

New traces go to ``results/spark_traces/`` unless ``--out`` says otherwise; replacing a shipped
file under ``data/`` needs ``--force``. When the output file already holds a trace of the same
scale, a run of some ``--queries`` replaces only those queries' jobs and keeps the others.

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

With ``--executor-counts 1,2`` the queries run at each count, each (repeat, count) in its own
Spark application (``local[c]``, or ``spark.cores.max=c`` one-core executors on a standalone
master; counts interleaved within a repeat so load drift touches all counts alike),
every node partitioned as at the largest count so a stage has the same tasks at every count.
The stages come from the largest count and each gains ``waves``: per count, the calibrated task
seconds of all repeats split by wave (:func:`classify_waves`: ``fresh``, ``first_wave``,
``rest_wave``, as in Decima's traces) and ``network_fraction`` = measured fetch wait / task
seconds. ``measured`` keeps per count and query the raw totals behind them (fetch wait, run
and CPU time, shuffle bytes read locally and remotely).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from envs.shipped import DATA_DIR
from envs.spark_dag import Job, Stage, jobs_to_json
from spark_integration.nodes import NodeRunner
from spark_integration.queries import QUERIES, QueryDag
from spark_integration.session import LOG_LEVEL_ENV, executors_of_master, resolve_log_level
from spark_integration.settings import parse_conf
from spark_integration.tpch import ensure_tpch, scale_label, table_paths

GROUP_PREFIX = "pipesched"
DEFAULT_TRACE_DIR = DATA_DIR / "spark_traces"
OUTPUT_TRACE_DIR = Path("results/spark_traces")


@dataclass
class TaskSample:
    stage_id: int
    network_s: float
    compute_s: float
    write_s: float
    network_bytes: float
    executor: str = ""
    launch_ms: float = 0.0
    finish_ms: float = 0.0
    run_s: float = 0.0
    cpu_s: float = 0.0
    remote_bytes: float = 0.0


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


def _metric(record: Mapping[str, Any], key: str, where: str) -> Any:
    """``record[key]``; a field Spark always writes but this log lacks is a ValueError naming
    the event and the field (no zero stands in for it)."""
    if key not in record:
        raise ValueError(f"{where}: no field {key!r}")
    return record[key]


def _task_sample(event: dict[str, Any], path: Path) -> TaskSample:
    """One successful task's sample from its ``SparkListenerTaskEnd``."""
    info = event.get("Task Info") or {}
    where = (f"{path}: SparkListenerTaskEnd of stage {event.get('Stage ID')} task "
             f"{info.get('Task ID', '?')}")
    metrics = _metric(event, "Task Metrics", where)
    read = _metric(metrics, "Shuffle Read Metrics", f"{where} 'Task Metrics'")
    written = _metric(metrics, "Shuffle Write Metrics", f"{where} 'Task Metrics'")
    network_s = _metric(read, "Fetch Wait Time", f"{where} 'Shuffle Read Metrics'") / 1e3
    write_s = _metric(written, "Shuffle Write Time", f"{where} 'Shuffle Write Metrics'") / 1e9
    run_s = _metric(metrics, "Executor Run Time", f"{where} 'Task Metrics'") / 1e3
    overhead_s = (_metric(metrics, "Executor Deserialize Time", f"{where} 'Task Metrics'")
                  + _metric(metrics, "Result Serialization Time", f"{where} 'Task Metrics'")
                  ) / 1e3
    remote = float(_metric(read, "Remote Bytes Read", f"{where} 'Shuffle Read Metrics'"))
    local = float(_metric(read, "Local Bytes Read", f"{where} 'Shuffle Read Metrics'"))
    return TaskSample(
        event["Stage ID"], network_s, max(run_s - network_s - write_s, 0.0) + overhead_s,
        write_s, remote + local,
        executor=str(_metric(info, "Executor ID", f"{where} 'Task Info'")),
        launch_ms=float(_metric(info, "Launch Time", f"{where} 'Task Info'")),
        finish_ms=float(_metric(info, "Finish Time", f"{where} 'Task Info'")), run_s=run_s,
        cpu_s=_metric(metrics, "Executor CPU Time", f"{where} 'Task Metrics'") / 1e9,
        remote_bytes=remote)


def parse_event_log(path: str | Path) -> dict[str, NodeTrace]:
    """Group the successful tasks of an event log by pipesched node (job group). A successful
    task without a metric the conversion reads is a ValueError naming the event and field."""
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
            if node is not None and reason == "Success":
                node.tasks.append(_task_sample(event, Path(path)))
    return nodes


def list_schedule_s(durations: Sequence[float], executors: int) -> float:
    """Makespan of tasks placed in order on the first free of ``executors`` slots."""
    slots = [0.0] * max(1, executors)
    for duration in durations:
        heapq.heapreplace(slots, slots[0] + duration)
    return max(slots)


WAVES = ("fresh", "first_wave", "rest_wave")


@dataclass(frozen=True)
class TaskRun:
    """Where and when one task ran: what the wave classification reads."""

    job: str  # one run of one query
    stage: str
    executor: str
    launch_ms: float
    finish_ms: float


def classify_waves(tasks: Sequence[TaskRun], slots: Mapping[str, int] | None = None,
                   ) -> list[str]:
    """The wave of each task (in input order), as in Decima's traces.

    A task slot is ``fresh`` for a job until it has run a task of that job; its first task of
    a stage after that is ``first_wave``; its other tasks of the stage are ``rest_wave``.

    ``slots`` gives the task slots of an executor id (default 1). A standalone executor with one
    core is one slot. In local mode every task runs on executor ``"driver"`` with N slots, and
    the event log does not say which thread ran a task, so slots are inferred: the executor's
    tasks, in launch order, each go to the slot whose last task finished earliest (a free slot
    idle longest when several are free). The driver stamps a task's Finish Time when its result
    is handled, which can come a few milliseconds after the freed core was offered the next
    task, so intervals on one slot may overlap slightly; taking the earliest-finishing slot
    absorbs that instead of opening an extra slot.
    """
    slots = slots or {}
    by_executor: dict[str, list[int]] = defaultdict(list)
    for index, task in enumerate(tasks):
        if task.finish_ms < task.launch_ms:
            raise ValueError(f"task {index} of {task.job}/{task.stage}: finish "
                             f"{task.finish_ms} before launch {task.launch_ms}")
        by_executor[task.executor].append(index)
    waves = [""] * len(tasks)
    for executor, indices in by_executor.items():
        count = slots.get(executor, 1)
        if count < 1:
            raise ValueError(f"executor {executor!r}: slots must be >= 1, got {count}")
        indices.sort(key=lambda i: (tasks[i].launch_ms, tasks[i].finish_ms, i))
        free = [(float("-inf"), slot) for slot in range(count)]
        jobs_seen: list[set[str]] = [set() for _ in range(count)]
        stages_seen: list[set[tuple[str, str]]] = [set() for _ in range(count)]
        for index in indices:
            task = tasks[index]
            _, slot = heapq.heappop(free)
            if task.job not in jobs_seen[slot]:
                waves[index] = "fresh"
            elif (task.job, task.stage) not in stages_seen[slot]:
                waves[index] = "first_wave"
            else:
                waves[index] = "rest_wave"
            jobs_seen[slot].add(task.job)
            stages_seen[slot].add((task.job, task.stage))
            heapq.heappush(free, (task.finish_ms, slot))
    return waves


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
    """The workload job of one query run from its node traces. A node without Spark tasks (one
    Spark answered from metadata) becomes one short task; a run none of whose nodes is in the
    log is a ValueError naming it (the wrong event log)."""
    index = {n.name: i for i, n in enumerate(dag.nodes)}
    groups = [f"{GROUP_PREFIX}|{run}|{job_name}|{node.name}" for node in dag.nodes]
    if not any(group in traces for group in groups):
        raise ValueError(f"no node of {dag.name} run {run}/{job_name} is in the event log "
                         f"(job groups {GROUP_PREFIX}|{run}|{job_name}|<node>)")
    stages, info = [], {}
    for i, node in enumerate(dag.nodes):
        trace = traces.get(groups[i])
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
               partition_level: int | None = None, first_repeat: int = 0,
               ) -> dict[tuple[str, int], dict[int, dict[str, float]]]:
    """Run each query alone, node after node, at each parallelism of ``levels``, ``repeats``
    times; ``(query, repeat) -> level -> node -> wall seconds``. Each node runs in the job group
    ``pipesched|<trace_run(repeat, level)>|<query>|<node>``, so an event log of the session
    can be converted with :func:`query_job`. ``partition_level``, when given, fixes the
    partitioning (so the task count) of every node instead of following the level; repeats are
    numbered from ``first_repeat``."""
    sc = runner.spark.sparkContext
    walls: dict[tuple[str, int], dict[int, dict[str, float]]] = {}
    for repeat in range(first_repeat, first_repeat + repeats):
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
                    runner.run(node, {p: paths[p] for p in node.parents}, out_path,
                               partition_level or level)
                    by_level[level][node.name] = time.monotonic() - started
                    paths[node.name] = out_path
                shutil.rmtree(f"{work_dir}/{run}/{dag.name}", ignore_errors=True)
            if not quiet:
                print(f"timed {dag.name} run {repeat}: " + ", ".join(
                    f"p{level} {sum(by_level[level].values()):.2f} s" for level in levels),
                    flush=True)
    sc.setJobGroup("", "")
    return walls


def parse_event_logs(paths: Iterable[str | Path]) -> dict[str, NodeTrace]:
    """:func:`parse_event_log` of several applications' logs (their job groups must differ)."""
    traces: dict[str, NodeTrace] = {}
    for path in paths:
        traces.update(parse_event_log(path))
    return traces


def calibrated_jobs(event_log: str | Path | list[Path], dags: Sequence[QueryDag],
                    walls: dict[tuple[str, int], dict[str, float]], repeats: int, executors: int,
                    prefix: str) -> tuple[list[Job], dict[str, Any]]:
    """Calibrated workload jobs (named ``<prefix>/<query>``) from the event log(s) of
    :func:`time_nodes` runs at parallelism ``executors``: per query the repeat with the median
    total wall time; ``walls`` is ``(query, repeat) -> node -> seconds``."""
    traces = parse_event_logs(event_log if isinstance(event_log, list) else [event_log])
    jobs, calibration = [], {}
    for dag in dags:
        totals = sorted(range(repeats), key=lambda r: sum(walls[(dag.name, r)].values()))
        keep = totals[len(totals) // 2]
        job, info = query_job(dag, traces, dag.name, trace_run(keep, executors),
                              walls[(dag.name, keep)], executors, name=f"{prefix}/{dag.name}")
        jobs.append(job)
        calibration[dag.name] = info
    return jobs, calibration


@dataclass
class CountRun:
    """The applications of a trace that ran the queries on ``executors`` task slots."""

    executors: int
    master: str
    event_logs: list[Path]  # one application per repeat
    walls: dict[tuple[str, int], dict[str, float]]  # (query, repeat) -> node -> seconds
    slots: dict[str, int]  # executor id -> task slots (for :func:`classify_waves`)
    load_average: list[float] = field(default_factory=list)  # 1-min load at each app's start


def count_master(master: str, executors: int) -> tuple[str, dict[str, str]]:
    """The master URL and extra conf that give an application ``executors`` task slots:
    ``local[executors]`` for a local master, ``spark.cores.max`` one-core executors on a
    standalone cluster (the driver listens where
    :func:`spark_integration.settings.default_driver_conf` says: this machine's address on the
    route to the master, so a driver in its own network namespace works too)."""
    if master == "local" or master.startswith("local["):
        return f"local[{executors}]", {}
    host = urlparse(master).hostname
    if not master.startswith("spark://") or host is None:
        raise ValueError(f"--master must be local[N] or spark://HOST:PORT, got {master!r}")
    return master, {"spark.cores.max": str(executors), "spark.executor.cores": "1"}


def record_app(master: str, executors: int, repeat: int, dags: Sequence[QueryDag],
               tables: dict[str, str], log_dir: Path, partition_level: int | None = None,
               extra_conf: Mapping[str, str] | None = None,
               ) -> tuple[Path, dict[tuple[str, int], dict[str, float]]]:
    """Time ``dags`` once (repeat number ``repeat``, after a warm-up query) in a fresh
    application with ``executors`` task slots, event logging on and ``extra_conf``; returns its
    event log and ``(query, repeat) -> node -> seconds``. The application is stopped."""
    from spark_integration.session import build_session, wait_for_executors

    url, conf = count_master(master, executors)
    spark = build_session(url, app_name=f"pipesched-tracegen-e{executors}",
                          event_log_dir=log_dir, max_executors=executors,
                          conf={"spark.eventLog.compress": "false",
                                "spark.eventLog.rolling.enabled": "false", **conf,
                                **(extra_conf or {})})
    try:
        if not url.startswith("local"):
            wait_for_executors(spark, executors)
        app_id = spark.sparkContext.applicationId
        runner = NodeRunner(spark, tables)
        with tempfile.TemporaryDirectory(prefix="pipesched-trace-") as work:
            # warm the JVMs before anything is measured
            runner.run_query(QUERIES["q6"], work, partition_level or executors)
            timed = time_nodes(runner, dags, [executors], 1, work,
                               partition_level=partition_level, first_repeat=repeat)
    finally:
        spark.stop()
    log_files = [p for p in log_dir.iterdir() if app_id in p.name]
    if not log_files:
        raise FileNotFoundError(f"no event log for {app_id} in {log_dir}")
    return log_files[0], {key: by_level[executors] for key, by_level in timed.items()}


def record_counts(master: str, counts: Sequence[int], dags: Sequence[QueryDag], repeats: int,
                  tables: dict[str, str], log_dir: Path, partition_level: int | None = None,
                  extra_conf: Mapping[str, str] | None = None) -> list[CountRun]:
    """One application per (repeat, count), counts interleaved within each repeat so that a
    drift in machine load touches every count alike."""
    runs = {count: CountRun(count, count_master(master, count)[0], [], {},
                            {"driver": count} if master.startswith("local") else {})
            for count in counts}
    for repeat in range(repeats):
        for count in counts:
            runs[count].load_average.append(round(os.getloadavg()[0], 2))
            log, walls = record_app(master, count, repeat, dags, tables, log_dir,
                                    partition_level, extra_conf)
            runs[count].event_logs.append(log)
            runs[count].walls.update(walls)
    return [runs[count] for count in counts]


def node_waves(traces: dict[str, NodeTrace], slots: Mapping[str, int]) -> dict[str, list[str]]:
    """Job group -> the wave of each of its tasks; a job is one run of one query."""
    groups = [(group, trace) for group, trace in traces.items() if trace.tasks]
    runs = [TaskRun(f"{trace.run}|{trace.job}", trace.node, task.executor, task.launch_ms,
                    task.finish_ms) for _, trace in groups for task in trace.tasks]
    labels = iter(classify_waves(runs, slots))
    return {group: [next(labels) for _ in trace.tasks] for group, trace in groups}


def _task_s(task: TaskSample, min_task_s: float) -> float:
    return task.network_s + max(task.compute_s, min_task_s) + task.write_s


def count_waves(run: CountRun, dags: Sequence[QueryDag], repeats: int,
                min_task_s: float = 1e-3,
                ) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, dict[str, float]]]:
    """Per (query, node): the ``waves`` entry of ``run`` (calibrated task seconds by wave,
    pooled over repeats, each repeat scaled by its own wall / simulated factor, and the
    measured network fraction); per query: the measured totals behind it."""
    traces: dict[str, NodeTrace] = {}
    labels: dict[str, list[str]] = {}
    for log in run.event_logs:  # slots are per application
        app_traces = parse_event_log(log)
        traces.update(app_traces)
        labels.update(node_waves(app_traces, run.slots))
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    measured: dict[str, dict[str, float]] = {}
    for dag in dags:
        totals = dict.fromkeys(("tasks", "task_s", "fetch_wait_s", "run_s", "cpu_s",
                                "shuffle_read_bytes", "remote_read_bytes"), 0.0)
        for node in dag.nodes:
            samples: dict[str, list[float]] = {wave: [] for wave in WAVES}
            network_s = task_s = 0.0
            for repeat in range(repeats):
                group = f"{GROUP_PREFIX}|{trace_run(repeat, run.executors)}|{dag.name}|{node.name}"
                trace = traces.get(group)
                if trace is None or not trace.tasks:
                    continue
                _, info = node_stage(trace, 0, [], node.name,
                                     run.walls[(dag.name, repeat)][node.name], run.executors,
                                     min_task_s)
                for task, wave in zip(trace.tasks, labels[group], strict=True):
                    seconds = _task_s(task, min_task_s)
                    samples[wave].append(round(seconds * info["scale"], 6))
                    network_s += task.network_s
                    task_s += seconds
                    totals["run_s"] += task.run_s
                    totals["cpu_s"] += task.cpu_s
                    totals["shuffle_read_bytes"] += task.network_bytes
                    totals["remote_read_bytes"] += task.remote_bytes
                totals["tasks"] += len(trace.tasks)
            totals["task_s"] += task_s
            totals["fetch_wait_s"] += network_s
            entries[(dag.name, node.name)] = {
                **samples, "network_fraction": round(network_s / task_s, 6) if task_s else 0.0}
        task_total, run_total = totals["task_s"], totals["run_s"]
        totals["network_fraction"] = totals["fetch_wait_s"] / task_total if task_total else 0.0
        totals["off_cpu_fraction"] = 1.0 - totals["cpu_s"] / run_total if run_total else 0.0
        measured[dag.name] = {k: round(v, 6) for k, v in totals.items()}
    return entries, measured


def multi_count_trace(runs: Sequence[CountRun], dags: Sequence[QueryDag], repeats: int,
                      prefix: str) -> dict[str, Any]:
    """Workload JSON whose stages come from the run at the largest executor count and carry
    ``waves`` for every run; ``calibration`` and ``measured`` are keyed by executor count."""
    largest = max(runs, key=lambda r: r.executors)
    jobs, _ = calibrated_jobs(largest.event_logs, dags, largest.walls, repeats,
                              largest.executors, prefix)
    payload = jobs_to_json(jobs)
    payload["calibration"], payload["measured"] = {}, {}
    for run in sorted(runs, key=lambda r: r.executors):
        _, payload["calibration"][str(run.executors)] = calibrated_jobs(
            run.event_logs, dags, run.walls, repeats, run.executors, prefix)
        entries, payload["measured"][str(run.executors)] = count_waves(run, dags, repeats)
        for job, dag in zip(payload["jobs"], dags, strict=True):
            for stage, node in zip(job["stages"], dag.nodes, strict=True):
                stage.setdefault("waves", {})[str(run.executors)] = entries[(dag.name,
                                                                             node.name)]
    return payload


def bed_of(state_dir: str | Path) -> dict[str, Any]:
    """The shape of a cluster ``spark_integration.cluster up`` started (its state directory):
    worker links, task slots behind each, link rate and CPU quota per worker."""
    from spark_integration.cluster import load_info

    info = load_info(state_dir)
    return {"workers": len(info.worker_pids), "cores_per_worker": info.cores_per_worker,
            "link_mbps": info.link_mbps, "cpus_per_worker": info.cpus_per_worker}


def trace_queries(scale_factor: float, queries: Sequence[str], out: str | Path,
                  master: str = "local[2]", event_log_dir: str | Path | None = None,
                  repeats: int = 1, cache_dir: str | Path | None = None,
                  executor_counts: Sequence[int] | None = None,
                  extra_conf: Mapping[str, str] | None = None,
                  bed: Mapping[str, Any] | None = None) -> Path:
    """Run each query alone with event logging on; write the calibrated trace to ``out``.

    With ``repeats > 1`` each query runs that many times and the run with the median total
    wall time is kept (the first run of a fresh JVM is slow). Every (repeat, count) is its own
    application (:func:`record_counts`). With ``executor_counts`` every node is partitioned as
    at the largest count and every stage gains ``waves`` (:func:`multi_count_trace`). ``bed``
    (the cluster's workers, cores, link rate and CPU quota: :func:`bed_of`) is kept in the
    trace's ``source`` so a simulator can give its links their measured capacity."""
    dags = [QUERIES[q] for q in queries]
    data_dir = ensure_tpch(scale_factor, *(() if cache_dir is None else (cache_dir,)))
    log_dir = Path(event_log_dir or tempfile.mkdtemp(prefix="pipesched-eventlog-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    tables = table_paths(data_dir)
    prefix = f"tpch-{scale_label(scale_factor)}"
    source: dict[str, Any] = {"scale_factor": scale_factor, "master": master,
                              "repeats": repeats, "conf": dict(extra_conf or {})}
    if bed is not None:
        source["bed"] = dict(bed)
    counts = sorted(set(executor_counts or [executors_of_master(master) or 2]))
    if counts[0] < 1:
        raise ValueError(f"executor counts must be >= 1, got {list(executor_counts or [])}")
    runs = record_counts(master, counts, dags, repeats, tables, log_dir,
                         counts[-1] if executor_counts else None, extra_conf)
    if executor_counts:
        payload = multi_count_trace(runs, dags, repeats, prefix)
        source.update(executor_counts=counts, partition_level=counts[-1])
    else:
        jobs, calibration = calibrated_jobs(runs[0].event_logs, dags, runs[0].walls, repeats,
                                            counts[0], prefix)
        payload = jobs_to_json(jobs)
        payload["calibration"] = calibration
        source["executors"] = counts[0]
    source["runs"] = {str(r.executors): {"master": r.master,
                                         "event_logs": [str(p) for p in r.event_logs],
                                         "load_average": r.load_average}
                      for r in runs}
    payload["source"] = source
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
    return out


def convert_event_log(event_log: str | Path, out: str | Path, executors: int = 1) -> Path:
    """Convert any pipesched event log to workload JSON: one job per (run, job), uncalibrated.
    A job of no known query keeps its nodes in first-seen order without parents (counted in a
    warning line on stderr)."""
    traces = parse_event_log(event_log)
    if not traces:
        raise ValueError(f"{event_log}: no jobs with a pipesched job group "
                         f"({GROUP_PREFIX}|<run>|<job>|<node>)")
    by_job: dict[tuple[str, str], list[NodeTrace]] = defaultdict(list)
    for trace in traces.values():
        by_job[(trace.run, trace.job)].append(trace)
    jobs, unknown = [], []
    for (run, job_name), nodes in sorted(by_job.items()):
        query = job_name.split("#")[0]
        dag = QUERIES.get(query)
        if dag is None:  # not a known query: nodes in first-seen order, no parents known
            stages = [node_stage(t, i, [], t.node)[0] for i, t in enumerate(nodes)]
            jobs.append(Job(f"{run}/{job_name}", 0.0, stages))
            unknown.append(f"{run}/{job_name}")
            continue
        job, _ = query_job(dag, traces, job_name, run, executors=executors,
                           name=f"{run}/{job_name}")
        jobs.append(job)
    if unknown:
        print(f"warning: {len(unknown)} job(s) of no known query, written without DAG parents: "
              f"{', '.join(unknown)}", file=sys.stderr)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(jobs_to_json(jobs), indent=1))
    return out


def merge_trace(previous: Mapping[str, Any], payload: dict[str, Any], path: Path
                ) -> dict[str, Any]:
    """``payload`` with the jobs of ``previous`` (a trace already at ``path``) that it does not
    replace, so tracing a few queries keeps the rest of the file."""
    if previous.get("source", {}).get("scale_factor") != payload["source"]["scale_factor"]:
        raise ValueError(f"{path} holds a trace of another scale; choose another --out")
    fresh = {job["name"] for job in payload["jobs"]}
    kept = [job for job in previous.get("jobs", []) if job["name"] not in fresh]
    merged = dict(payload, jobs=kept + payload["jobs"])
    if "calibration" in previous and "calibration" in payload:
        merged["calibration"] = {**previous["calibration"], **payload["calibration"]}
    merged["source"] = dict(payload["source"], kept_jobs_from_previous=[j["name"] for j in kept])
    return merged


def check_output(out: Path, force: bool) -> None:
    """Refuse to replace a shipped file under ``data/`` without ``--force``."""
    if out.exists() and out.resolve().is_relative_to(DATA_DIR) and not force:
        raise ValueError(f"{out} is shipped data; pass --force to replace it, or choose --out")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_integration.tracegen",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.1, help="TPC-H scale factor")
    parser.add_argument("--queries", default=",".join(QUERIES),
                        help="comma-separated query names")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--executor-counts",
                        help="comma-separated task-slot counts, one application each "
                             "(local[N] per count, or spark.cores.max on a cluster); stages "
                             "gain per-count 'waves'")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="extra Spark conf for the traced applications (repeatable)")
    parser.add_argument("--event-log", help="convert this existing event log instead")
    parser.add_argument("--event-log-dir", help="where to keep the event log of a new run")
    parser.add_argument("--out", help=f"output workload JSON (default: {OUTPUT_TRACE_DIR}/"
                                      f"tpch_<scale>.json; an existing trace of the same "
                                      f"scale keeps the queries not traced now)")
    parser.add_argument("--bed", metavar="STATE_DIR",
                        help="state directory of the `cluster up` bed traced (its workers, "
                             "cores, link rate and CPU quota go into the trace's source)")
    parser.add_argument("--force", action="store_true",
                        help="allow replacing a shipped file under data/")
    parser.add_argument("--log-level", help=f"Spark's log level (default ${LOG_LEVEL_ENV} or "
                                            f"WARN)")
    args = parser.parse_args(argv)
    from py4j.protocol import Py4JJavaError

    try:
        # every session this run starts reads the level from the environment
        os.environ[LOG_LEVEL_ENV] = resolve_log_level(args.log_level)
        if args.event_log:
            out = Path(args.out or "trace.json")
            check_output(out, args.force)
            out = convert_event_log(args.event_log, out)
        else:
            queries = [q for q in args.queries.split(",") if q]
            unknown = [q for q in queries if q not in QUERIES]
            if unknown:
                raise ValueError(f"unknown queries {unknown}; known: {sorted(QUERIES)}")
            if args.scale <= 0 or args.repeats < 1:
                raise ValueError(f"--scale must be > 0 and --repeats >= 1, got {args.scale} "
                                 f"and {args.repeats}")
            counts = None
            if args.executor_counts:
                try:
                    counts = [int(c) for c in args.executor_counts.split(",") if c]
                except ValueError:
                    raise ValueError(f"--executor-counts must be comma-separated integers, "
                                     f"got {args.executor_counts!r}") from None
            extra_conf = parse_conf(args.conf)
            out = Path(args.out or OUTPUT_TRACE_DIR / f"tpch_{scale_label(args.scale)}.json")
            check_output(out, args.force)
            previous = json.loads(out.read_text()) if out.exists() else None
            out = trace_queries(args.scale, queries, out, args.master, args.event_log_dir,
                                args.repeats, executor_counts=counts,
                                extra_conf=extra_conf,
                                bed=bed_of(args.bed) if args.bed else None)
            if previous is not None and set(queries) != set(QUERIES):
                merged = merge_trace(previous, json.loads(out.read_text()), out)
                out.write_text(json.dumps(merged, indent=1))
    except (OSError, ValueError) as error:
        print(f"tracegen: error: {error}", file=sys.stderr)
        return 2
    except Py4JJavaError as error:  # e.g. a driver address the JVM cannot bind
        print(f"tracegen: error: Spark: {error.java_exception.toString()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tracegen: interrupted; nothing written", file=sys.stderr)
        return 130
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
