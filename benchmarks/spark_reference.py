"""Our Spark simulator side by side with decima-sim on the same TPC-H job sequences.

    python -m benchmarks.spark_reference --decima-tpch DIR [--decima-sim DIR] [--jobs 200]
        [--seeds 5] [--quick] [--out results]

``--decima-tpch``: Decima's public TPC-H traces (``<size>/adj_mat_<q>.npy`` and
``task_duration_<q>.npy``, e.g. ``spark_env/tpch`` of a decima-sim checkout; not shipped here:
that repository has no licence). ``--decima-sim``: a decima-sim checkout; when given, its own
simulator runs the same sequences in a subprocess (``benchmarks/decima_driver.py``), else its
rows are reported missing. Per seed one sequence (``TraceSequenceGenerator``: uniform query
and size, Poisson arrivals of mean 25 s, whole milliseconds), 50 executors, moving delay 2 s,
warm-up 1 s, ``fair`` and ``fifo`` in both simulators; reported: mean JCT, CPU seconds per
episode (process time, measured interleaved) and decisions, with 95% CIs over seeds, and the
ratios ours / decima-sim. Targets: mean JCT of ``fair`` and ``fifo`` within 10% of
decima-sim's, our episode CPU at most half of decima-sim's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluate import run_episode
from benchmarks.report import markdown_table, mean_ci, write_report
from envs.spark_dag import SparkDagShopEnv, TraceSequenceGenerator, load_decima_tpch
from heuristics.spark_dag import make_heuristic

SCHEDULERS = ("fair", "fifo")
CLUSTER = {"num_executors": 50, "moving_delay_s": 2.0, "warmup_s": 1.0}


def sequences(tpch_dir: Path, num_jobs: int, seeds: list[int]) -> dict[int, list]:
    generator = TraceSequenceGenerator(load_decima_tpch(tpch_dir), num_jobs=num_jobs)
    return {seed: generator(np.random.default_rng(seed)) for seed in seeds}


def run_ours(jobs: list, scheduler: str, seed: int) -> dict[str, Any]:
    env = SparkDagShopEnv(observation_mode="graph", **CLUSTER)
    cpu = time.process_time()
    info = run_episode(env, make_heuristic(scheduler), seed=seed, options={"instance": jobs})
    cpu = time.process_time() - cpu
    return {"simulator": "pipesched", "scheduler": scheduler, "seed": seed,
            "mean_jct_s": info["mean_jct_s"], "cpu_s": cpu, "decisions": info["decisions"],
            "jobs_done": info["jobs_done"]}


def run_decima(decima_sim: Path, tpch_dir: Path, jobs: list, scheduler: str,
               seed: int) -> dict[str, Any]:
    spec = {"executors": CLUSTER["num_executors"], "moving_delay_ms": 2000, "warmup_ms": 1000,
            "tpch_dir": str(tpch_dir.resolve()),
            "runs": [{"scheduler": scheduler, "seed": seed, "jobs": [
                [job.name.split("/")[0], int(job.name.split("/q")[1].split("#")[0]),
                 int(round(job.arrival_s * 1000))] for job in jobs]}]}
    driver = Path(__file__).with_name("decima_driver.py").resolve()
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        done = subprocess.run([sys.executable, str(driver), str(decima_sim.resolve()),
                               str(spec_path), str(out_path)], cwd=decima_sim,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"decima-sim failed: {done.stderr.strip().splitlines()[-1:]}")
        row = json.loads(out_path.read_text())[0]
    return {"simulator": "decima-sim", **row}


def summarize(rows: list[dict]) -> list[dict]:
    table = []
    for simulator in ("pipesched", "decima-sim"):
        for scheduler in SCHEDULERS:
            cell = [r for r in rows if r["simulator"] == simulator and r["scheduler"] == scheduler]
            if not cell:
                table.append({"simulator": simulator, "scheduler": scheduler,
                              "mean_jct_s": "missing", "cpu_s": "missing"})
                continue
            jct, jct_ci = mean_ci([r["mean_jct_s"] for r in cell])
            cpu, cpu_ci = mean_ci([r["cpu_s"] for r in cell])
            table.append({"simulator": simulator, "scheduler": scheduler,
                          "mean_jct_s": round(jct, 1), "jct_ci95": round(jct_ci, 1),
                          "cpu_s": round(cpu, 2), "cpu_ci95": round(cpu_ci, 2),
                          "decisions": int(np.mean([r["decisions"] for r in cell])),
                          "seeds": len(cell)})
    return table


def targets(rows: list[dict]) -> dict[str, dict]:
    def paired(scheduler: str, key: str) -> float | None:
        ours = {r["seed"]: r[key] for r in rows
                if r["simulator"] == "pipesched" and r["scheduler"] == scheduler}
        theirs = {r["seed"]: r[key] for r in rows
                  if r["simulator"] == "decima-sim" and r["scheduler"] == scheduler}
        seeds = sorted(set(ours) & set(theirs))
        if not seeds:
            return None
        return float(np.mean([ours[s] for s in seeds]) / np.mean([theirs[s] for s in seeds]))

    result = {}
    for scheduler in SCHEDULERS:
        ratio = paired(scheduler, "mean_jct_s")
        result[f"{scheduler}_jct_ratio_vs_decima"] = {
            "value": ratio, "threshold": 0.10, "op": "abs(value-1) <=",
            "met": ratio is not None and abs(ratio - 1.0) <= 0.10}
    cpu = paired("fair", "cpu_s")
    result["episode_cpu_ratio_vs_decima"] = {"value": cpu, "threshold": 0.5, "op": "<=",
                                             "met": cpu is not None and cpu <= 0.5}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spark_reference")
    parser.add_argument("--decima-tpch", type=Path, required=True)
    parser.add_argument("--decima-sim", type=Path)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    if not args.decima_tpch.is_dir():
        parser.error(f"--decima-tpch {args.decima_tpch}: not a directory")
    if args.decima_sim is not None and not (args.decima_sim / "spark_env").is_dir():
        parser.error(f"--decima-sim {args.decima_sim}: no spark_env/ folder (not a decima-sim "
                     f"checkout)")
    num_jobs, seeds = (50, 2) if args.quick else (args.jobs, args.seeds)
    if args.decima_sim is None:
        print("warning: --decima-sim not given: decima-sim rows are reported missing",
              file=sys.stderr)
    rows = []
    for seed, jobs in sequences(args.decima_tpch, num_jobs, list(range(seeds))).items():
        for scheduler in SCHEDULERS:  # interleaved, so machine load drifts hit both alike
            rows.append(run_ours(jobs, scheduler, seed))
            if args.decima_sim is not None:
                rows.append(run_decima(args.decima_sim, args.decima_tpch, jobs, scheduler, seed))
            print(json.dumps(rows[-1]), file=sys.stderr)
    summary = summarize(rows)
    body = markdown_table(summary, ["simulator", "scheduler", "mean_jct_s", "jct_ci95", "cpu_s",
                                    "cpu_ci95", "decisions", "seeds"], floatfmt=".2f")
    write_report("spark_reference", args.out, rows, targets(rows), body,
                 extra={"summary": summary, "jobs": num_jobs})


if __name__ == "__main__":
    main()
