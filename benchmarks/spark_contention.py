"""The contention law of shuffle fetches on shared links, measured on a namespaced Spark
cluster, and the simulator's network fitted on half of the runs and scored on the other half.

    python -m benchmarks.spark_contention [--quick] [--out DIR] [--rates 10,50]
        [--concurrency 1,2,3,4] [--repeats 2] [--records DIR]

Per link rate R (Mbit/s each way) the benchmark starts the bed
(``spark_integration.cluster up --workers 2 --cores 4 --link-mbps R --cpus 0.9``, namespace
prefix ``pscb``) and runs :mod:`spark_integration.contention` inside its driver namespace:
rounds of ``k = 1..4`` shuffle stages (``stage_mb`` scaled with R so one stage alone fetches for
about two seconds), each stage fetched alone and then all ``k`` at once. Then it reports

- per ``(R, k)``: each stage's concurrent fetch time over its own alone time (mean, 95% CI);
- per link and run: the reducers that fetched over it and its goodput (bytes its hub end
  sent, from the kernel's counters, over the span from the first reduce task's launch to the
  last one's finish on that worker, from the event log);
- the laws: the simulator's network (:class:`envs.spark_dag.DagShopSimulator`, processor
  sharing with ``network_flow_overhead`` beta) predicts each stage's concurrent fetch time
  from the bytes its reducers read remotely; its parameters (the share of the link rate one
  flow gets alone, the full-rate flows a link carries, the fixed time of a fetch job, beta)
  are fitted on the rounds of the first half of the repeats and scored
  on the second half. ``work-conserving`` fixes beta = 0; ``per-flow overhead`` fits it. A
  collapse (goodput falling as flows are added) shows in the goodput table.

Target: the fitted law predicts held-out stages within 15% (mean absolute relative error).
``--records DIR`` re-analyses saved records (``contention_R.json``) without Spark. ``--ship``
writes the best law per rate to ``data/spark_link_law.json``, which the simulator benchmark
reads for traces recorded on the bed (``benchmarks.spark_dag``, section ``bed_traces``).
``--quick``: one rate (50), k = 1, 2, one repeat pair (fits and scores on the same rounds:
a smoke run, its error is not a held-out figure).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from benchmarks.report import markdown_table, mean_ci, target, write_report
from envs.shipped import DATA_DIR
from envs.spark_dag import ClusterSpec, Job, Stage
from envs.spark_dag.simulator import DagShopSimulator
from spark_integration import cluster

NAME = "spark_contention"
LINK_LAW = DATA_DIR / "spark_link_law.json"
PREFIX = "pscb"
WORKERS, CORES, CPUS = 2, 4, 0.9
SECONDS_ALONE = 2.0   # what one stage's fetch takes alone at any rate (sizes the stage)
TOLERANCE = 0.15


def stage_mb(rate_mbps: float) -> float:
    """A stage whose reducers fetch for about SECONDS_ALONE over two links: half its bytes
    cross a link, split between the two directions."""
    return round(rate_mbps / 8 * SECONDS_ALONE * 2 * 0.9, 1)


def record_rate(rate_mbps: float, concurrency: Sequence[int], repeats: int) -> dict[str, Any]:
    """One bed at ``rate_mbps``: start it, run the fetch rounds in its driver namespace, stop
    it; the raw record of :mod:`spark_integration.contention`."""
    with tempfile.TemporaryDirectory(prefix="contention-") as scratch:
        state, out = Path(scratch) / "cluster", Path(scratch) / "record.json"
        info = cluster.up(WORKERS, CORES, "2g", state, link_mbps=rate_mbps, prefix=PREFIX,
                          cpus=CPUS)
        try:
            command = ["ip", "netns", "exec", cluster.driver_ns(PREFIX), sys.executable, "-m",
                       "spark_integration.contention", "--master", info.master_url,
                       "--executors", str(WORKERS * CORES), "--hub", cluster.hub_ns(PREFIX),
                       "--stage-mb", str(stage_mb(rate_mbps)), "--concurrency",
                       ",".join(map(str, concurrency)), "--repeats", str(repeats),
                       "--out", str(out)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"fetch rounds at {rate_mbps:g} Mbit/s failed: "
                                   f"{done.stderr.strip().splitlines()[-1:]}")
        finally:
            cluster.down(state)
        record = json.loads(out.read_text())
    record["rate_mbps"] = rate_mbps
    return record


def stage_ratios(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each stage's concurrent fetch time over its own alone time, per round."""
    alone = {(r["round"], r["stage"]): r["wall_s"] for r in record["runs"] if r["alone"]}
    return [{"rate_mbps": record["rate_mbps"], "k": r["concurrency"], "round": r["round"],
             "stage": r["stage"], "alone_s": alone[(r["round"], r["stage"])],
             "shared_s": r["wall_s"], "ratio": r["wall_s"] / alone[(r["round"], r["stage"])]}
            for r in record["runs"] if not r["alone"]]


def link_goodput(record: dict[str, Any], hosts: dict[str, str]) -> list[dict[str, Any]]:
    """Per run (concurrent fetches counted once) and worker link: reducers that fetched over
    it and its goodput in Mbit/s (counter bytes into the worker over its reducers' span)."""
    rows, seen = [], set()
    for run in record["runs"]:
        key = (run["round"], run["alone"], run["stage"] if run["alone"] else -1)
        if key in seen:
            continue
        seen.add(key)
        group = [r for r in record["runs"] if r["round"] == run["round"]
                 and r["alone"] == run["alone"] and (not run["alone"] or r is run)]
        tasks = [t for r in group for t in r["tasks"]]
        for device, host in hosts.items():
            mine = [t for t in tasks if t["host"] == host]
            if not mine:
                continue
            span_s = (max(t["finish_ms"] for t in mine) - min(t["launch_ms"] for t in mine)) / 1e3
            received = run["link_bytes"][device]["tx"]
            rows.append({"rate_mbps": record["rate_mbps"], "round": run["round"],
                         "alone": run["alone"], "link": device, "reducers": len(mine),
                         "span_s": span_s, "goodput_mbps": received * 8 / 1e6 / span_s,
                         "efficiency": received * 8 / 1e6 / span_s / record["rate_mbps"]})
    return rows


def worker_hosts(record: dict[str, Any]) -> dict[str, str]:
    """Hub-side device of worker ``i`` (``pscw<i>h``) -> its address."""
    hosts = {t["host"] for r in record["runs"] for t in r["tasks"]}
    return {f"pscw{i}h": cluster.worker_ip(i) for i in range(WORKERS)
            if cluster.worker_ip(i) in hosts}


def concurrent_groups(record: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The runs that fetched at the same time: each alone run by itself, each round's
    concurrent runs together."""
    groups: dict[tuple, list] = defaultdict(list)
    for run in record["runs"]:
        groups[(run["round"], run["alone"], run["stage"] if run["alone"] else -1)].append(run)
    return list(groups.values())


def simulate_group(group: Sequence[dict[str, Any]], rate_mbps: float,
                   params: Sequence[float]) -> list[float]:
    """The simulator's fetch time of each run of ``group`` under ``params = (efficiency,
    flows_per_link, fixed_s, beta)``: one job per stage, one task per reducer whose network
    phase is its remote bytes at ``efficiency`` x the link rate (one flow alone), on one-core
    executors behind ``WORKERS`` links that each carry ``flows_per_link`` full-rate flows."""
    efficiency, flows_per_link, fixed_s, beta = params
    link_bytes_s = efficiency * rate_mbps * 1e6 / 8
    jobs = [Job(f"s{i}", 0.0, [Stage(0, (), len(run["tasks"]),
                                      network_s=[t["remote_bytes"] / link_bytes_s
                                                 for t in run["tasks"]])])
            for i, run in enumerate(group)]
    spec = ClusterSpec(num_executors=WORKERS * CORES,
                       network_capacity=WORKERS * flows_per_link,
                       network_flow_overhead=beta, moving_delay_s=0.0, warmup_s=0.0,
                       duration_model="fixed", move_from_pool=False)
    sim = DagShopSimulator(jobs, spec)
    sim.run_until_decision()
    while not sim.done:
        for stage in range(len(jobs)):   # one stage per job: global stage i is job i's
            if sim.free_count and sim.grant(stage, spec.num_executors):
                sim.apply(stage, spec.num_executors)
        sim.wait()
        sim.run_until_decision()
    return [fixed_s + float(end) for end in sim.job_completion_s]


def relative_errors(records: Sequence[dict[str, Any]], rounds: set[tuple[float, int]],
                    params: Sequence[float]) -> np.ndarray:
    errors = []
    for record in records:
        rate = record["rate_mbps"]
        for group in concurrent_groups(record):
            if (rate, group[0]["round"]) not in rounds:
                continue
            predicted = simulate_group(group, rate, params)
            errors += [(p - run["wall_s"]) / run["wall_s"] for p, run in zip(predicted, group, strict=True)]
    return np.array(errors)


def fit_law(records: Sequence[dict[str, Any]], rounds: set[tuple[float, int]],
            fit_beta: bool) -> tuple[float, float, float, float]:
    """``(efficiency, flows_per_link, fixed_s, beta)`` minimising the squared relative error
    on ``rounds`` (beta held at 0 unless ``fit_beta``)."""
    def params_of(x: np.ndarray) -> tuple[float, float, float, float]:
        return float(x[0]), float(x[1]), float(x[2]), float(x[3]) if fit_beta else 0.0

    def loss(x: np.ndarray) -> float:
        params = params_of(x)
        if not 0.05 < params[0] <= 1 or params[1] < 0.5 or params[2] < 0 or params[3] < 0:
            return 1e6
        return float(np.mean(relative_errors(records, rounds, params) ** 2))
    starts = [(efficiency, flows, 0.5, 0.1) for efficiency in (0.6, 0.9)
              for flows in (1.0, 1.5)]   # several starts: the loss has local minima
    fits = [minimize(loss, np.array(start), method="Nelder-Mead",
                     options={"xatol": 1e-3, "fatol": 1e-6, "maxiter": 300})
            for start in starts]
    return params_of(min(fits, key=lambda fit: fit.fun).x)


def split_rounds(records: Sequence[dict[str, Any]], quick: bool
                 ) -> tuple[set[tuple[float, int]], set[tuple[float, int]]]:
    """Fit on the rounds of the first half of the repeats, score on the second half (quick:
    the same rounds for both, a smoke run)."""
    fit, score = set(), set()
    for record in records:
        rounds = sorted({r["round"] for r in record["runs"]})
        half = len(rounds) // 2
        for position, index in enumerate(rounds):
            if quick or position < half:
                fit.add((record["rate_mbps"], index))
            if quick or position >= half:
                score.add((record["rate_mbps"], index))
    return fit, score


def law_rows(records: Sequence[dict[str, Any]], quick: bool) -> list[dict[str, Any]]:
    """Each law fitted per link rate (a trace is simulated at the rate it was recorded at)."""
    rows = []
    for record in records:
        fit, score = split_rounds([record], quick)
        for law, fit_beta in (("work-conserving", False), ("per-flow overhead", True)):
            params = fit_law([record], fit, fit_beta)
            fitted = np.abs(relative_errors([record], fit, params))
            held_out = np.abs(relative_errors([record], score, params))
            rows.append({"rate_mbps": record["rate_mbps"], "law": law,
                         "efficiency": params[0], "flows_per_link": params[1],
                         "fixed_s": params[2], "beta": params[3], "fit_rounds": len(fit),
                         "fit_abs_error": float(fitted.mean()),
                         "scored_stages": held_out.size,
                         "mean_abs_error": float(held_out.mean()),
                         "p90_abs_error": float(np.percentile(held_out, 90)),
                         "within_15pct": float(np.mean(held_out <= TOLERANCE))})
    return rows


def summarise(rows: Sequence[dict[str, Any]], cell: tuple[str, str], value: str,
              count: str) -> list[dict[str, Any]]:
    """``value`` per ``cell`` (two keys): count, mean, 95% CI half-width and median."""
    by_cell: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        by_cell[(row[cell[0]], row[cell[1]])].append(row[value])
    table = []
    for (first, second), values in sorted(by_cell.items()):
        mean, half = mean_ci(values)
        table.append({cell[0]: first, cell[1]: second, count: len(values), value: mean,
                      "ci95": half, "median": float(np.median(values))})
    return table


def ship_law(laws: Sequence[dict[str, Any]]) -> None:
    """The law with the smallest held-out error at each rate, with that error."""
    rates = {}
    for rate in sorted({row["rate_mbps"] for row in laws}):
        best = min((r for r in laws if r["rate_mbps"] == rate),
                   key=lambda r: r["mean_abs_error"])
        rates[f"{rate:g}"] = {key: best[key] for key in
                              ("law", "efficiency", "flows_per_link", "fixed_s", "beta",
                               "mean_abs_error", "within_15pct")}
    LINK_LAW.write_text(json.dumps({"command": "python -m benchmarks." + NAME + "".join(
        " " + a for a in sys.argv[1:]), "rates": rates}, indent=1))
    print(f"wrote {LINK_LAW}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one rate, k = 1, 2, one repeat")
    parser.add_argument("--out", default="results")
    parser.add_argument("--rates", help="Mbit/s each way, comma-separated (default 10,50)")
    parser.add_argument("--concurrency", default=None, help="k levels (default 1,2,3,4)")
    parser.add_argument("--repeats", type=int, default=None, help="default 2 (quick 1)")
    parser.add_argument("--records", help="analyse saved contention_R.json files instead")
    parser.add_argument("--ship", action="store_true",
                        help=f"write the best law per rate to {LINK_LAW}")
    args = parser.parse_args(argv)
    try:
        rates = [float(r) for r in (args.rates or ("50" if args.quick else "10,50")).split(",")]
        levels = [int(k) for k in (args.concurrency or ("1,2" if args.quick else "1,2,3,4")
                                   ).split(",")]
    except ValueError:
        parser.error("--rates and --concurrency take comma-separated numbers")
    repeats = args.repeats or (1 if args.quick else 2)
    if min(rates) <= 0 or min(levels) < 1 or repeats < 1:
        parser.error("rates, concurrency levels and repeats must be positive")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for rate in rates:
        saved = Path(args.records or out) / f"contention_{rate:g}.json"
        if args.records:
            if not saved.exists():
                parser.error(f"--records: {saved} does not exist")
            records.append(json.loads(saved.read_text()))
            continue
        print(f"bed at {rate:g} Mbit/s: {len(levels) * repeats} rounds ...", flush=True)
        try:
            records.append(record_rate(rate, levels, repeats))
        except (RuntimeError, OSError, TimeoutError) as error:
            print(f"spark_contention: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        saved.write_text(json.dumps(records[-1]))
    report(args, records)


def report(args: argparse.Namespace, records: Sequence[dict[str, Any]]) -> None:
    ratios = [row for record in records for row in stage_ratios(record)]
    links = [row for record in records for row in link_goodput(record, worker_hosts(record))]
    laws = law_rows(records, args.quick)
    targets = {}
    for rate in sorted({row["rate_mbps"] for row in laws}):
        best = min((row for row in laws if row["rate_mbps"] == rate),
                   key=lambda row: row["mean_abs_error"])
        targets[f"{rate:g} Mbit/s: {best['law']} law on held-out stages (mean abs error)"] = (
            target(best["mean_abs_error"], TOLERANCE, "<=",
                   "quick: fitted and scored on the same rounds" if args.quick else None))
    body = "\n".join([
        "## Fetch time shared / alone, per stage", "",
        markdown_table(summarise(ratios, ("rate_mbps", "k"), "ratio", "stages"),
                       ["rate_mbps", "k", "stages", "ratio", "ci95", "median"]), "",
        "(ratio: shared / alone; work-conserving sharing of saturated links gives k)", "",
        "## Link goodput by reducers fetching over the link", "",
        markdown_table(summarise(links, ("rate_mbps", "reducers"), "efficiency", "samples"),
                       ["rate_mbps", "reducers", "samples", "efficiency", "ci95", "median"]), "",
        "(efficiency: link goodput / rate)", "",
        "## Laws: the simulator's network fitted on half the rounds, scored on the rest", "",
        markdown_table(laws, ["rate_mbps", "law", "efficiency", "flows_per_link", "fixed_s", "beta",
                              "fit_rounds", "fit_abs_error", "scored_stages",
                              "mean_abs_error", "p90_abs_error", "within_15pct"])])
    print(body)
    if args.ship and not args.quick:
        ship_law(laws)
    write_report(NAME, args.out, ratios, targets, body,
                 extra={"links": links, "laws": laws, "stage_mb": {
                     str(r["rate_mbps"]): r["stage_mb"] for r in records}})


if __name__ == "__main__":
    main()
