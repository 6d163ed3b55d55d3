"""The sweep runner itself: wall time of one sweep in one process, on ``local[2]`` and on a
2-worker standalone cluster (1 core each), with the speed-up and the per-task overhead.

    python -m benchmarks.runner [--quick] [--out DIR] [--sweep spark_dag|offload]
        [--seeds N] [--engines local,pool[2],local[2],cluster]

``spark_dag``: every Spark DAG-shop heuristic on ``--seeds`` seeded online workloads, one seed
per task. ``offload``: the CP-SAT optimum, every heuristic and the shipped agent on
``--seeds`` 3..6-job instances (CP-SAT runs 2 search workers: less to gain from 2 cores).
Every engine runs the same payloads; the rows (timing fields aside) must be identical.
``pool[2]`` is the control: the local engine in 2 plain processes, no Spark, which shows what
the (shared) machine gives two processes during the run.
Overhead per task = (wall x slots - sum of the task functions' own seconds) / tasks: the slot
time not spent in a task (JVM and Python worker start, scheduling, (de)serialisation). The
1-minute load average before and after each run is recorded: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.report import markdown_table, parse_args, print_targets, target, write_report
from envs import PROBLEMS
from spark_integration import runner
from spark_integration.runner import RunResult, run_tasks

SWEEPS = ("spark_dag", "offload")


def sweep_payloads(sweep: str, seeds: int, batch: int = 1) -> tuple[str, list[dict]]:
    from agents.sweep_tasks import model_payload

    if sweep == "spark_dag":
        return ("agents.sweep_tasks:compare_episodes",
                [{"env_id": PROBLEMS["spark_dag"].env_id,
                  "seeds": list(range(first, min(first + batch, seeds))), "models": {}}
                 for first in range(0, seeds, batch)])
    from agents.compare import SHIPPED_MODELS
    from envs.offload import ProfileGenerator

    rng = np.random.default_rng(0)
    models = model_payload({"agent": str(SHIPPED_MODELS[PROBLEMS["offload"].env_id])})
    generator = ProfileGenerator(min_jobs=3, max_jobs=6, bandwidth="4G")
    return ("agents.sweep_tasks:offload_instances",
            [{"instances": [generator(rng).to_dict()], "models": models}
             for _ in range(seeds)])


def _timeless(result: RunResult) -> list[list[dict]]:
    return [[{k: v for k, v in row.items() if k != "plan_seconds"} for row in rows]
            for rows in result.rows]


def _pool(task: str, payloads: list[dict], processes: int) -> RunResult:
    """The control: the local engine in ``processes`` plain processes (payloads dealt round
    robin), no Spark: what the machine gives several processes at this moment."""
    from concurrent.futures import ProcessPoolExecutor

    started = time.perf_counter()
    with ProcessPoolExecutor(processes) as pool:
        parts = list(pool.map(run_tasks, [task] * processes,
                              [payloads[k::processes] for k in range(processes)]))
    rows, reports = [None] * len(payloads), [None] * len(payloads)
    for k, part in enumerate(parts):
        rows[k::processes], reports[k::processes] = part.rows, part.reports
    return RunResult(rows, reports, "local", None, time.perf_counter() - started)


ENGINE = re.compile(r"local|cluster|(?:local|pool)\[(\d+)\]")


def engine_slots(engine: str) -> int:
    """Task slots of a ``--engines`` entry other than ``cluster`` (its cluster says)."""
    match = ENGINE.fullmatch(engine)
    return int(match.group(1)) if match and match.group(1) else 1


def measure(engine: str, task: str, payloads: list[dict]) -> tuple[dict[str, Any], RunResult]:
    """One run of the sweep on ``engine`` (``local``, ``local[N]``, ``cluster`` or the
    control ``pool[N]``)."""
    from spark_integration import cluster

    load_before = os.getloadavg()[0]
    info = None
    if engine == "cluster":
        info = cluster.up(workers=2, cores=1, state_dir=tempfile.mkdtemp(prefix="runner-bench-"))
    try:
        master = info.master_url if info else engine
        slots = info.total_cores if info else engine_slots(engine)
        if engine == "local":
            result = run_tasks(task, payloads)
        elif engine.startswith("pool["):
            result = _pool(task, payloads, slots)
        else:
            result = run_tasks(task, payloads, "spark", master)
    finally:
        runner.close()  # each engine's wall time includes its own session start
        if info is not None:
            cluster.down(info.state_dir)
    task_s = [report.seconds for report in result.reports]
    row = {"engine": engine, "master": master, "slots": slots, "tasks": len(payloads),
           "wall_s": result.wall_s, "task_s_sum": sum(task_s),
           "task_s_median": statistics.median(task_s),
           "overhead_per_task_s": (result.wall_s * slots - sum(task_s)) / len(payloads),
           "retried_tasks": len(result.retried), "executor_pids": len({r.pid for r in
                                                                      result.reports}),
           "load_before": load_before, "load_after": os.getloadavg()[0]}
    return row, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runner")
    parser.add_argument("--sweep", choices=SWEEPS, default="spark_dag")
    parser.add_argument("--seeds", type=int, help="seeds or instances (default 16; --quick 4)")
    parser.add_argument("--batch", type=int, default=1,
                        help="seeds per task (spark_dag; default 1)")
    parser.add_argument("--engines", default="local,pool[2],local[2],cluster",
                        help="comma list of local, local[N], cluster, pool[N] (the control: N "
                             "plain processes, no Spark)")
    args = parse_args("runner", argv, parser)
    seeds = (4 if args.quick else 16) if args.seeds is None else args.seeds
    if seeds < 1 or args.batch < 1:
        parser.error(f"--seeds and --batch: must be at least 1, got {seeds} and {args.batch}")
    unknown = [e for e in args.engines.split(",") if not ENGINE.fullmatch(e)]
    if unknown:
        parser.error(f"--engines: unknown {unknown}; use local, local[N], cluster, pool[N]")
    task, payloads = sweep_payloads(args.sweep, seeds, args.batch)
    rows, results = [], {}
    for engine in args.engines.split(","):
        print(f"runner benchmark: {args.sweep}, {len(payloads)} tasks on {engine}", flush=True)
        started = time.perf_counter()
        row, results[engine] = measure(engine, task, payloads)
        rows.append(row)
        print(f"  {engine}: {row['wall_s']:.1f} s wall ({time.perf_counter() - started:.1f} s "
              f"with cluster start/stop), load {row['load_before']:.1f} -> "
              f"{row['load_after']:.1f}", flush=True)
    base = next((row for row in rows if row["engine"] == "local"), None)
    targets = {}
    for row in rows:
        row["identical_to_first"] = _timeless(results[row["engine"]]) == _timeless(
            results[rows[0]["engine"]])
        if base is not None:
            row["speedup"] = base["wall_s"] / row["wall_s"]
    if base is not None:
        targets["sweep_at_least_60s_in_one_process"] = target(base["wall_s"], 60.0, ">=")
        for row in rows:
            if row["engine"] not in ("local",) and not row["engine"].startswith("pool"):
                targets[f"speedup_{row['engine']}"] = target(row["speedup"], 1.7, ">=")
    targets["identical_rows"] = target(float(all(r["identical_to_first"] for r in rows)), 1.0,
                                       ">=")
    columns = ["engine", "slots", "tasks", "wall_s", "speedup", "task_s_sum", "task_s_median",
               "overhead_per_task_s", "retried_tasks", "identical_to_first", "load_before",
               "load_after"]
    body = "\n\n".join([f"## {args.sweep}: {seeds} tasks, one per seed/instance",
                        markdown_table(rows, columns, ".2f")])
    path = write_report("runner", args.out, rows, targets, body,
                        extra={"quick": args.quick, "sweep": args.sweep, "seeds": seeds})
    print(f"wrote {path}")
    print_targets(targets)


if __name__ == "__main__":
    main()
