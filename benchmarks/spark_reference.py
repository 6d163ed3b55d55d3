"""Our Spark simulator side by side with the reference simulators on the same job sequences.

    python -m benchmarks.spark_reference --decima-tpch DIR [--decima-sim DIR]
        [--spark-sched-sim DIR] [--jobs 200] [--seeds 5] [--policy PATH] [--quick]
        [--out results]

(each path also from ``$DECIMA_TPCH``, ``$DECIMA_SIM``, ``$SPARK_SCHED_SIM``, so ``make bench``
includes them when set).

``--decima-tpch``: Decima's public TPC-H traces (``<size>/adj_mat_<q>.npy`` and
``task_duration_<q>.npy``, e.g. ``spark_env/tpch`` of a decima-sim checkout; not shipped here:
that repository has no licence). ``--decima-sim`` / ``--spark-sched-sim``: checkouts of the
reference simulators; each given one runs the same sequences with its own code in a
subprocess (``benchmarks/decima_driver.py``, ``benchmarks/sss_driver.py``); a missing one is
warned about and its rows reported missing. Per seed one sequence (``TraceSequenceGenerator``:
uniform query and size, Poisson arrivals of mean 25 s, whole milliseconds), 50 executors,
moving delay 2 s, warm-up 1 s, ``fair`` and ``fifo`` everywhere, interleaved so machine load
drifts hit all alike. Reported: mean JCT (over the finished jobs), jobs finished, CPU seconds
per episode (process time) and decisions with 95% CIs over seeds, and per-seed paired ratios
ours / reference. Targets: mean JCT of ``fair`` and ``fifo`` within 10% of each reference,
our episode CPU at most half of decima-sim's. A seed on which the two simulators finished a
different number of jobs is left out of the ratios and fails that pair's targets with its
reason: mean JCTs over different jobs are not comparable.

Inside each reference, on the same sequences, the learned policy (``--policy``, default the
shipped online one) and every pipesched heuristic also run (``policy:PATH``,
``heuristic:NAME``: the drivers map the reference's state to a ``ClusterState`` and apply the
decision as the reference's own action, ``benchmarks/reference_adapter.py``). Reported per
reference: agent / the reference's own ``fair`` and agent / the best heuristic (the lowest
mean JCT over the seeds among the reference's ``fair`` and ``fifo`` and every
``heuristic:NAME``), paired per seed. Target (issue 28): agent <= 0.90x decima-sim's fair.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluate import run_episode
from agents.spark_dag.policy import SHIPPED
from benchmarks.reference_adapter import POLICY_ROOT, graph_scheduler
from benchmarks.reference_spec import MEAN_JCT_OVER, SCHEDULERS, SpecError
from benchmarks.report import (
    Missing,
    markdown_table,
    mean_ci,
    print_targets,
    target,
    write_report,
)
from envs.spark_dag import SparkDagShopEnv, TraceSequenceGenerator, load_decima_tpch
from heuristics.spark_dag import HEURISTICS, make_heuristic

REFERENCES = ("decima-sim", "spark-sched-sim")
DRIVERS = {"decima-sim": "decima_driver.py", "spark-sched-sim": "sss_driver.py"}
CLUSTER = {"num_executors": 50, "moving_delay_s": 2.0, "warmup_s": 1.0}
AGENT_VS_FAIR_IN_DECIMA = 0.90  # issue 28: the agent inside decima-sim, against its fair


def sequences(tpch_dir: Path, num_jobs: int, seeds: list[int]) -> dict[int, list]:
    generator = TraceSequenceGenerator(load_decima_tpch(tpch_dir), num_jobs=num_jobs)
    return {seed: generator(np.random.default_rng(seed)) for seed in seeds}


def run_ours(jobs: list, scheduler: str, seed: int) -> dict[str, Any]:
    env = SparkDagShopEnv(observation_mode="graph", **CLUSTER)
    cpu = time.process_time()
    info = run_episode(env, make_heuristic(scheduler), seed=seed, options={"instance": jobs})
    cpu = time.process_time() - cpu
    return {"simulator": "pipesched", "scheduler": scheduler, "seed": seed,
            "mean_jct_s": info["mean_jct_s"], "mean_jct_over": MEAN_JCT_OVER,
            "jobs_done": info["jobs_done"], "jobs_total": len(jobs), "cpu_s": cpu,
            "decisions": info["decisions"]}


def policy_scheduler(path: Path) -> str:
    """The drivers' ``policy:PATH`` for a policy file: relative to the shipped files' folder
    when it is one of them (so reports name ``models/...``), else absolute."""
    path = path.resolve()
    try:
        return f"policy:{path.relative_to(POLICY_ROOT)}"
    except ValueError:
        return f"policy:{path}"


def reference_schedulers(agent: str) -> list[str]:
    """What runs inside each reference: its own fair and fifo, the agent, every heuristic."""
    return [*SCHEDULERS, agent, *(f"heuristic:{name}" for name in HEURISTICS)]


def run_reference(simulator: str, checkout: Path, tpch_dir: Path, jobs: list,
                  schedulers: list[str], seed: int,
                  executors: int = CLUSTER["num_executors"]) -> list[dict[str, Any]]:
    """One episode per scheduler of a reference simulator (its own code, in one subprocess)
    on ``jobs``."""
    sequence = [[job.name.split("/")[0], int(job.name.split("/q")[1].split("#")[0]),
                 int(round(job.arrival_s * 1000))] for job in jobs]
    spec = {"executors": executors, "moving_delay_ms": 2000, "warmup_ms": 1000,
            "tpch_dir": str(tpch_dir.resolve()),
            "runs": [{"scheduler": scheduler, "seed": seed, "jobs": sequence}
                     for scheduler in schedulers]}
    driver = Path(__file__).with_name(DRIVERS[simulator]).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        workdir = checkout
        if simulator == "spark-sched-sim":  # it reads data/tpch under its working directory
            workdir = Path(tmp)
            (workdir / "data").mkdir()
            (workdir / "data" / "tpch").symlink_to(tpch_dir.resolve())
        done = subprocess.run([sys.executable, str(driver), str(checkout.resolve()),
                               str(spec_path), str(out_path)], cwd=workdir,
                              capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{simulator} driver exited {done.returncode}: {last}")
        rows = json.loads(out_path.read_text())
    return [{"simulator": simulator, **row} for row in rows]


def summarize(rows: list[dict]) -> list[dict]:
    table = []
    for simulator in ("pipesched", *REFERENCES):
        for scheduler in SCHEDULERS:
            cell = [r for r in rows if r["simulator"] == simulator and r["scheduler"] == scheduler]
            if not cell:
                table.append({"simulator": simulator, "scheduler": scheduler,
                              "mean_jct_s": "missing", "cpu_s": "missing"})
                continue
            table.append({"simulator": simulator, "scheduler": scheduler,
                          **_cell_summary(cell)})
    return table


def _cell_summary(cell: list[dict]) -> dict:
    """Jobs done, mean JCT and CPU (with 95% CIs), decisions and seeds of one cell's runs."""
    jct, jct_ci = mean_ci([r["mean_jct_s"] for r in cell
                           if r["mean_jct_s"] is not None] or [float("nan")])
    cpu, cpu_ci = mean_ci([r["cpu_s"] for r in cell])
    return {"jobs_done": f"{sum(r['jobs_done'] for r in cell)}/"
                         f"{sum(r['jobs_total'] for r in cell)}",
            "mean_jct_s": round(jct, 1), "jct_ci95": round(jct_ci, 1),
            "cpu_s": round(cpu, 2), "cpu_ci95": round(cpu_ci, 2),
            "decisions": int(np.mean([r["decisions"] for r in cell])), "seeds": len(cell)}


def paired_ratios(rows: list[dict]) -> list[dict]:
    """Per reference and scheduler: ours / theirs per seed (mean JCT, CPU), mean and 95% CI."""
    table = []
    for reference in REFERENCES:
        for scheduler in SCHEDULERS:
            entry = _paired(rows, reference, scheduler)
            if entry:
                table.append(entry)
    return table


def _by_seed(rows: list[dict], simulator: str, scheduler: str) -> dict[int, dict]:
    return {r["seed"]: r for r in rows
            if r["simulator"] == simulator and r["scheduler"] == scheduler}


def _paired(rows: list[dict], reference: str, scheduler: str) -> dict[str, Any]:
    entry = paired_entry(_by_seed(rows, "pipesched", scheduler),
                         _by_seed(rows, reference, scheduler), "pipesched", reference,
                         ("mean_jct_s", "cpu_s"))
    return {"reference": reference, "scheduler": scheduler, **entry} if entry else {}


def paired_entry(mine: dict[int, dict], theirs: dict[int, dict], my_label: str,
                 their_label: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """Per seed ``mine / theirs`` of each key (mean, 95% CI) over the seeds both ran and
    finished the same number of jobs of; the others listed in ``jobs_done_mismatch``. Empty
    when no seed was run by both."""
    both = sorted(set(mine) & set(theirs))
    if not both:
        return {}
    mismatched = [f"seed {s}: {my_label} {mine[s]['jobs_done']}/{mine[s]['jobs_total']}, "
                  f"{their_label} {theirs[s]['jobs_done']}/{theirs[s]['jobs_total']} jobs done"
                  for s in both if mine[s]["jobs_done"] != theirs[s]["jobs_done"]]
    seeds = [s for s in both if mine[s]["jobs_done"] == theirs[s]["jobs_done"]
             and mine[s]["jobs_done"] > 0]
    entry: dict[str, Any] = {"seeds": len(seeds), "jobs_done_mismatch": mismatched}
    for key in keys:
        ratios = [mine[s][key] / theirs[s][key] for s in seeds] or [float("nan")]
        mean, half = mean_ci(ratios)
        entry[f"{key}_ratio"], entry[f"{key}_ratio_ci95"] = round(mean, 3), round(half, 3)
        entry[f"{key}_ratio_median"] = round(float(np.median(ratios)), 3)
    return entry


def inside_table(rows: list[dict], schedulers: list[str]) -> list[dict]:
    """Per reference and scheduler run inside it: mean JCT, CPU and decisions over seeds."""
    table = []
    for reference in REFERENCES:
        for scheduler in schedulers:
            cell = list(_by_seed(rows, reference, scheduler).values())
            if not cell:
                continue
            table.append({"reference": reference, "scheduler": scheduler,
                          **_cell_summary(cell)})
    return table


def best_heuristic(rows: list[dict], reference: str, agent: str) -> str | None:
    """The scheduler other than ``agent`` with the lowest mean JCT over the seeds inside
    ``reference`` (among those that finished a job on every seed they ran)."""
    jct: dict[str, list[float | None]] = {}
    for r in rows:
        if r["simulator"] == reference and r["scheduler"] != agent:
            jct.setdefault(r["scheduler"], []).append(r["mean_jct_s"])
    means = {name: float(np.mean(values)) for name, values in jct.items()
             if None not in values}
    return min(means, key=means.__getitem__) if means else None


def agent_ratios(rows: list[dict], agent: str) -> list[dict]:
    """Per reference: agent / its own ``fair`` and agent / the best heuristic, mean JCT paired
    per seed."""
    result = []
    for reference in REFERENCES:
        mine = _by_seed(rows, reference, agent)
        best = best_heuristic(rows, reference, agent)
        for versus, label in (("fair", "fair"), (best, "best_heuristic")):
            entry = paired_entry(mine, _by_seed(rows, reference, versus), agent, str(versus),
                                 ("mean_jct_s",)) if versus else {}
            if entry:
                result.append({"reference": reference, "versus": label, "scheduler": versus,
                               **entry})
    return result


def _pair_target(ratios: list[dict], reference: str, scheduler: str, key: str,
                 threshold: float, op: str) -> dict[str, Any]:
    """One paired target; no paired seeds, or a seed where the simulators finished different
    numbers of jobs, fails it with the reason."""
    entry = next((r for r in ratios if r["reference"] == reference
                  and r["scheduler"] == scheduler), None)
    if entry is None:
        return target(None, threshold, op, f"no {reference} rows for {scheduler}")
    mismatched = entry["jobs_done_mismatch"]
    reason = (f"jobs_done differs on {len(mismatched)} seed(s): {mismatched[0]}"
              if mismatched else None)
    return target(entry[f"{key}_ratio"], threshold, op, reason)


def targets(ratios: list[dict], agent: list[dict] | None = None) -> dict[str, dict]:
    """Mean JCT within 10% of each reference for fair and fifo (paired per seed); episode CPU
    at most half of decima-sim's (``fair``); the agent inside decima-sim at most 0.90x its
    fair (``agent``: :func:`agent_ratios`)."""
    result = {f"{scheduler}_jct_ratio_vs_{reference}":
              _pair_target(ratios, reference, scheduler, "mean_jct_s", 0.10, "abs(value-1) <=")
              for reference in REFERENCES for scheduler in SCHEDULERS}
    result["episode_cpu_ratio_vs_decima-sim"] = _pair_target(ratios, "decima-sim", "fair",
                                                              "cpu_s", 0.5, "<=")
    vs_fair = [{**r, "scheduler": "agent"} for r in agent or []
               if r["reference"] == "decima-sim" and r["versus"] == "fair"]
    result["agent_jct_ratio_vs_fair_in_decima-sim"] = _pair_target(
        vs_fair, "decima-sim", "agent", "mean_jct_s", AGENT_VS_FAIR_IN_DECIMA, "<=")
    return result


def env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spark_reference")
    parser.add_argument("--decima-tpch", type=Path, default=env_path("DECIMA_TPCH"))
    parser.add_argument("--decima-sim", type=Path, default=env_path("DECIMA_SIM"))
    parser.add_argument("--spark-sched-sim", type=Path, default=env_path("SPARK_SCHED_SIM"))
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--policy", type=Path, default=SHIPPED["online"],
                        help="the learned policy run inside each reference (default: the "
                             "shipped online policy)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    missing = Missing()
    if args.decima_tpch is None:
        missing.add("Decima TPC-H traces", "no --decima-tpch or $DECIMA_TPCH: nothing to "
                    "compare, every target fails")
        result = targets([])
        write_report("spark_reference", args.out, [], result,
                     "**missing**: run with `--decima-tpch DIR`.",
                     extra={"missing": missing.entries})
        print_targets(result)
        return
    if not args.decima_tpch.is_dir():
        parser.error(f"--decima-tpch {args.decima_tpch}: not a directory")
    if args.decima_sim is not None and not (args.decima_sim / "spark_env").is_dir():
        parser.error(f"--decima-sim {args.decima_sim}: no spark_env/ folder (not a decima-sim "
                     f"checkout)")
    num_jobs, seeds = (50, 2) if args.quick else (args.jobs, args.seeds)
    if args.spark_sched_sim is not None and not (args.spark_sched_sim
                                                 / "spark_sched_sim").is_dir():
        parser.error(f"--spark-sched-sim {args.spark_sched_sim}: no spark_sched_sim/ folder")
    agent = policy_scheduler(args.policy)
    try:  # the drivers would refuse it for every run; say so once, before running anything
        graph_scheduler(agent, CLUSTER["num_executors"], "--policy")
    except SpecError as error:
        parser.error(str(error))
    inside = reference_schedulers(agent)
    checkouts = {"decima-sim": args.decima_sim, "spark-sched-sim": args.spark_sched_sim}
    for reference, checkout in checkouts.items():
        if checkout is None:
            missing.add(reference, "no checkout given: its rows are missing and its targets "
                        "fail")
    rows = []
    for seed, jobs in sequences(args.decima_tpch, num_jobs, list(range(seeds))).items():
        # interleaved per seed, so machine load drifts hit all simulators alike
        rows += [run_ours(jobs, scheduler, seed) for scheduler in SCHEDULERS]
        for reference, checkout in checkouts.items():
            if checkout is not None:
                rows += run_reference(reference, checkout, args.decima_tpch, jobs, inside,
                                      seed)
        print(json.dumps(rows[-1]), file=sys.stderr)
    summary, ratios = summarize(rows), paired_ratios(rows)
    table = inside_table(rows, inside)
    agent_rows = agent_ratios(rows, agent)
    body = "\n".join([
        markdown_table(summary, ["simulator", "scheduler", "jobs_done", "mean_jct_s",
                                 "jct_ci95", "cpu_s",
                                 "cpu_ci95", "decisions", "seeds"], floatfmt=".2f"), "",
        "Paired per seed, pipesched / reference:", "",
        markdown_table(ratios, ["reference", "scheduler", "mean_jct_s_ratio",
                                "mean_jct_s_ratio_ci95", "cpu_s_ratio", "cpu_s_ratio_ci95",
                                "seeds"]), "",
        f"Inside each reference (agent = `{agent}`):", "",
        markdown_table(table, ["reference", "scheduler", "jobs_done", "mean_jct_s", "jct_ci95",
                               "cpu_s", "decisions", "seeds"], floatfmt=".2f"), "",
        "Agent inside each reference, paired per seed:", "",
        markdown_table(agent_rows, ["reference", "versus", "scheduler", "mean_jct_s_ratio",
                                    "mean_jct_s_ratio_ci95", "mean_jct_s_ratio_median",
                                    "seeds"])])
    result = targets(ratios, agent_rows)
    write_report("spark_reference", args.out, rows, result, body,
                 extra={"summary": summary, "paired_ratios": ratios, "jobs": num_jobs,
                        "agent": agent, "inside_references": table,
                        "agent_in_references": agent_rows, "missing": missing.entries})
    print_targets(result)


if __name__ == "__main__":
    main()
