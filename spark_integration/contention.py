"""Shuffle fetches sharing links, measured on a namespaced Spark cluster.

    ip netns exec psc_drv python -m spark_integration.contention --master spark://10.213.0.1:P \
        --executors 8 --stage-mb 8 --concurrency 1,2,3,4 --repeats 2 --hub psc_hub \
        --out contention.json

Each *round* at concurrency ``k`` builds ``k`` shuffle stages: a map side of ``--maps`` tasks
that writes ``--stage-mb`` MB of incompressible rows (SHA-512 digests) into ``--reducers``
partitions. The map sides run first, one after another, and their shuffle files stay; then
every stage's reduce side (fetch and count, nothing else) runs alone, one after another, and
then all ``k`` at once from ``k`` driver threads. Spark reuses a materialised shuffle, so the
alone and the concurrent fetch read the same blocks from the same executors: each stage is its
own baseline. Per reduce run the record keeps

- the wall time on the driver (submit to result) and, from the event log, every reduce
  task's executor, host, launch and finish times, fetch wait and remote bytes read;
- the bytes each worker's link carried during the run, read from the hub namespace's
  interface counters (``--hub``; what crossed the kernel-shaped veth, headers included).

Nothing here models anything: :mod:`benchmarks.spark_contention` fits and scores laws on
these records.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from py4j.protocol import Py4JJavaError

from spark_integration.session import build_session, stop_session, wait_for_executors
from spark_integration.tracegen import GROUP_PREFIX, parse_event_log

ROW_BYTES = 256   # four SHA-512 digests, as binary: no shuffle codec shrinks them


@dataclass
class FetchRun:
    """One reduce side: ``stage`` of round ``round``, alone or with ``concurrency - 1`` others."""

    round: int
    stage: int
    concurrency: int
    alone: bool
    wall_s: float
    link_bytes: dict[str, dict[str, int]] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)


def link_counters(hub: str) -> dict[str, dict[str, int]]:
    """``{device: {"rx": bytes, "tx": bytes}}`` of every worker link's hub end (``...h``); the
    hub end's tx is what the worker received."""
    out = subprocess.run(["ip", "-n", hub, "-s", "-j", "link", "show"], capture_output=True,
                         text=True, check=True).stdout
    counters = {}
    for link in json.loads(out):
        name = link["ifname"]
        if name.endswith("h"):
            stats = link["stats64"]
            counters[name] = {"rx": stats["rx"]["bytes"], "tx": stats["tx"]["bytes"]}
    return counters


def _delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
           ) -> dict[str, dict[str, int]]:
    return {dev: {way: after[dev][way] - before[dev][way] for way in ("rx", "tx")}
            for dev in after if dev in before}


def shuffle_stage(spark: Any, stage_mb: float, maps: int, reducers: int, seed: int) -> Any:
    """The JVM RDD of a shuffle of ``stage_mb`` MB of random rows into ``reducers`` partitions
    (counting it twice reuses the map side)."""
    rows = max(1, int(stage_mb * 2**20 / ROW_BYTES))
    digest = " || ".join(f"unhex(sha2(cast(id * 4 + {j} + {seed} * 1000003 as string), 512))"
                         for j in range(4))
    frame = spark.range(0, rows, 1, maps).selectExpr(f"{digest} AS payload")
    return frame.repartition(reducers)._jdf.queryExecution().toRdd()


def _count(spark: Any, rdd: Any, group: str) -> float:
    context = spark.sparkContext
    context.setJobGroup(group, group)
    start = time.perf_counter()
    rdd.count()
    wall_s = time.perf_counter() - start
    context.setJobGroup("", "")
    return wall_s


def _group(run: str, stage: int, side: str) -> str:
    return f"{GROUP_PREFIX}|{run}|s{stage}|{side}"


def run_round(spark: Any, index: int, concurrency: int, stage_mb: float, maps: int,
              reducers: int, hub: str) -> list[FetchRun]:
    """Map sides, then each reduce side alone, then all at once (module docstring)."""
    rdds = [shuffle_stage(spark, stage_mb, maps, reducers, seed=index * 16 + s)
            for s in range(concurrency)]
    for stage, rdd in enumerate(rdds):
        _count(spark, rdd, _group(f"r{index}", stage, "map"))
    runs = []
    for stage, rdd in enumerate(rdds):
        before = link_counters(hub)
        wall_s = _count(spark, rdd, _group(f"r{index}a", stage, "fetch"))
        runs.append(FetchRun(index, stage, concurrency, True, wall_s,
                             _delta(before, link_counters(hub))))
    walls: dict[int, float] = {}

    def fetch(stage: int) -> None:
        walls[stage] = _count(spark, rdds[stage], _group(f"r{index}c", stage, "fetch"))

    threads = [threading.Thread(target=fetch, args=(s,)) for s in range(concurrency)]
    before = link_counters(hub)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shared = _delta(before, link_counters(hub))
    if len(walls) != concurrency:
        raise RuntimeError(f"round {index}: {concurrency - len(walls)} concurrent fetches failed")
    runs += [FetchRun(index, s, concurrency, False, walls[s], shared) for s in range(concurrency)]
    return runs


def executor_hosts(event_log: Path) -> dict[str, str]:
    """Executor id -> host, from the log's ``SparkListenerExecutorAdded`` events."""
    hosts = {}
    for file in sorted(event_log.rglob("*")):
        if not file.is_file():
            continue
        with file.open() as lines:
            for line in lines:
                if '"SparkListenerExecutorAdded"' in line:
                    event = json.loads(line)
                    hosts[str(event["Executor ID"])] = event["Executor Info"]["Host"]
    return hosts


def attach_tasks(runs: Sequence[FetchRun], event_log: Path) -> None:
    """Every reduce task of each run from the event log (a run without tasks is an error)."""
    nodes = parse_event_log(event_log)
    hosts = executor_hosts(event_log)
    for run in runs:
        side = f"r{run.round}{'a' if run.alone else 'c'}"
        trace = nodes.get(_group(side, run.stage, "fetch"))
        if trace is None or not trace.tasks:
            raise RuntimeError(f"event log {event_log}: no tasks of round {run.round} stage "
                               f"{run.stage} ({'alone' if run.alone else 'concurrent'})")
        run.tasks = [{"executor": t.executor, "host": hosts.get(t.executor, "?"),
                      "launch_ms": t.launch_ms, "finish_ms": t.finish_ms,
                      "fetch_wait_s": t.network_s, "remote_bytes": t.remote_bytes,
                      "run_s": t.run_s} for t in trace.tasks]


def measure(master: str, executors: int, concurrency: Sequence[int], repeats: int,
            stage_mb: float, maps: int, reducers: int, hub: str) -> list[FetchRun]:
    """Every round (``repeats`` x ``concurrency``, interleaved) in one Spark application."""
    with tempfile.TemporaryDirectory(prefix="contention-log-") as log_dir:
        spark = build_session(master, "pipesched-contention", scheduler_mode="FIFO",
                              event_log_dir=log_dir, lean_jvm=True,
                              conf={"spark.cores.max": str(executors),
                                    "spark.executor.cores": "1",
                                    "spark.executor.memory": "512m",
                                    "spark.eventLog.compress": "false",
                                    "spark.locality.wait": "0s"})
        try:
            wait_for_executors(spark, executors)
            shuffle_stage(spark, 1, maps, reducers, seed=-1).count()   # warm-up
            runs: list[FetchRun] = []
            rounds = [k for _ in range(repeats) for k in concurrency]
            for index, k in enumerate(rounds):
                runs += run_round(spark, index, k, stage_mb, maps, reducers, hub)
        finally:
            stop_session(spark)
        attach_tasks(runs, Path(log_dir))
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_integration.contention",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", required=True, help="spark://HOST:PORT of the bed")
    parser.add_argument("--executors", type=int, required=True, help="one-core executors")
    parser.add_argument("--hub", required=True, help="the bed's hub namespace (counters)")
    parser.add_argument("--stage-mb", type=float, default=8.0)
    parser.add_argument("--maps", type=int, default=8)
    parser.add_argument("--reducers", type=int, default=2)
    parser.add_argument("--concurrency", default="1,2,3,4")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        levels = [int(k) for k in args.concurrency.split(",")]
    except ValueError:
        parser.error(f"--concurrency must be integers like 1,2,3,4, got {args.concurrency!r}")
    if min(levels) < 1 or args.stage_mb <= 0 or args.repeats < 1:
        parser.error("--concurrency levels, --stage-mb and --repeats must be positive")
    try:
        runs = measure(args.master, args.executors, levels, args.repeats, args.stage_mb,
                       args.maps, args.reducers, args.hub)
    except (RuntimeError, OSError, TimeoutError, subprocess.CalledProcessError,
            Py4JJavaError) as error:
        print(f"contention: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    Path(args.out).write_text(json.dumps({"stage_mb": args.stage_mb, "maps": args.maps,
                                          "reducers": args.reducers,
                                          "runs": [asdict(r) for r in runs]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
