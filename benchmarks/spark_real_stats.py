"""Everything :mod:`benchmarks.spark_real` computes from its measured rows: the JCT summary,
the per-stream and pooled paired ratios, the targets, the pace check in numbers, the prediction
errors and the report's markdown; and :class:`Plan`, the resolved flags the report describes
(the protocol: :mod:`benchmarks.spark_real`).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.report import Missing, markdown_table, mean_ci, target
from benchmarks.spark_real_runs import COUNTED, EXCLUDED, RE_RUN, Stream

PIPESCHED = ["fair", "sjf", "contention_free", "agent"]


@dataclass(frozen=True)
class Plan:
    """The flags with their ``--quick`` defaults resolved: streams, masters and drivers."""

    scale: float
    num_jobs: int
    seeds: list[int]
    loads: list[float]
    repeats: int
    trace_repeats: int
    pace_tolerance: float
    settings: Any  # spark_integration.settings.ClusterSettings, or None
    masters: list[str]
    executors: int
    drivers: list[str]
    streams: list[Stream]


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


def _mean_ci_median(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean, 95% t-interval half-width and median; all NaN without values."""
    if not len(values):
        return float("nan"), float("nan"), float("nan")
    mean, half = mean_ci(values)
    return mean, half, float(np.median(values))


def stream_means(rows: Sequence[dict[str, Any]], key: str) -> dict[int, float]:
    """Per seed, the mean of ``key`` over the counted rows (of one master, load and driver)."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        if row["counted"]:
            by_seed[row["seed"]].append(row[key])
    return {seed: float(np.mean(values)) for seed, values in sorted(by_seed.items())}


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per master, load and driver: mean JCT per stream (counted runs), then mean, 95%
    t-interval and median over the streams; makespan likewise; runs counted and set aside, the
    probes' pace range over every attempt, failed jobs and the decision latency."""
    groups: dict[tuple[str, float, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["master"], row["load"], row["scheduler"])].append(row)
    out = []
    for (master, load, name), group in groups.items():
        jct = stream_means(group, "mean_jct_s")
        span = stream_means(group, "makespan_s")
        jct_mean, jct_ci, jct_median = _mean_ci_median(list(jct.values()))
        out.append({"master": master, "load": load, "scheduler": name,
                    "streams": len(jct), "runs": sum(r["counted"] for r in group),
                    "set_aside": sum(not r["counted"] for r in group),
                    "mean_jct_s": jct_mean, "jct_ci95_s": jct_ci, "jct_median_s": jct_median,
                    "makespan_s": _mean_ci_median(list(span.values()))[0],
                    "pace_min": float(min(r["pace"] for r in group)),
                    "pace_max": float(max(r["pace"] for r in group)),
                    "failed_jobs": int(sum(r["failed_jobs"] for r in group)),
                    "decision_ms_median": float(np.median(
                        [r["decision_ms"].get("median", np.nan) for r in group])),
                    "decision_ms_p99": float(np.max(
                        [r["decision_ms"].get("p99", np.nan) for r in group]))})
    return out


# ratio name -> (numerator, denominator); "best_other" is the best pipesched driver other than
# the agent in that paired block, "best" the best pipesched driver including it
RATIOS = {
    "agent_over_spark_fifo": ("agent", "spark-fifo"),
    "agent_over_spark_fair": ("agent", "spark-fair"),
    "agent_over_best_other_pipesched": ("agent", "best_other"),
    "best_pipesched_over_spark_fifo": ("best", "spark-fifo"),
    "best_pipesched_over_spark_fair": ("best", "spark-fair"),
    "contention_free_over_fair": ("contention_free", "fair"),
}
RATIO_HEADERS = {
    "agent_over_spark_fifo": "agent / FIFO", "agent_over_spark_fair": "agent / FAIR",
    "agent_over_best_other_pipesched": "agent / best other",
    "best_pipesched_over_spark_fifo": "best / FIFO", "best_pipesched_over_spark_fair":
    "best / FAIR", "contention_free_over_fair": "contention_free / fair",
}


@dataclass(frozen=True)
class RatioTarget:
    """Pooled ``ratio`` <= ``threshold`` at ``load`` (None: at every load run)."""

    ratio: str
    threshold: float
    load: float | None = None

    def name(self, master: str, load: float) -> str:
        return f"{self.ratio}_le{self.threshold:g}_{master}_load{load:g}"


TARGETS = (
    # issue 13
    RatioTarget("agent_over_spark_fifo", 0.80),
    RatioTarget("agent_over_spark_fair", 0.90),
    RatioTarget("agent_over_best_other_pipesched", 1.0),
    RatioTarget("best_pipesched_over_spark_fifo", 0.80),
    # issue 26
    RatioTarget("agent_over_best_other_pipesched", 0.95),
    RatioTarget("best_pipesched_over_spark_fair", 0.80, 1.5),
    RatioTarget("best_pipesched_over_spark_fair", 0.95, 1.0),
    RatioTarget("contention_free_over_fair", 0.95),
)


def failed_jobs_reason(rows: Sequence[dict[str, Any]]) -> str | None:
    """Why these rows' mean JCTs cannot be compared: the drivers with failed jobs (their mean
    JCT counts finished jobs only, so failing looks fast), or None when no job failed."""
    failed: dict[str, int] = defaultdict(int)
    for row in rows:
        if row["failed_jobs"]:
            failed[row["scheduler"]] += row["failed_jobs"]
    if not failed:
        return None
    return ("failed jobs (" + ", ".join(f"{name}: {count}" for name, count in failed.items())
            + "): a mean JCT over the finished jobs only is not comparable")


def block_ratio(jct_s: dict[str, float], top: str, bottom: str) -> float | None:
    """``top``'s mean JCT over ``bottom``'s in one paired block (driver -> mean JCT); None when
    either did not run there."""
    others = [jct_s[n] for n in PIPESCHED if n in jct_s and n != "agent"]
    named = dict(jct_s)
    if others:
        named["best_other"] = min(others)
    if others or "agent" in jct_s:
        named["best"] = min([*others, jct_s.get("agent", np.inf)])
    if top in named and bottom in named:
        return named[top] / named[bottom]
    return None


def stream_ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stream (master, load, seed) and ratio of :data:`RATIOS`: its value in every repeat
    whose paired block has both drivers counted, and their mean (``repeats`` 0 and NaN when no
    block has)."""
    blocks: dict[tuple[str, float, int], dict[int, dict[str, float]]] = {}
    for row in rows:
        stream = blocks.setdefault((row["master"], row["load"], row["seed"]), {})
        if row["counted"]:
            stream.setdefault(row["repeat"], {})[row["scheduler"]] = row["mean_jct_s"]
    out = []
    for (master, load, seed), repeats in blocks.items():
        for ratio, (top, bottom) in RATIOS.items():
            values = [v for _, jct in sorted(repeats.items())
                      if (v := block_ratio(jct, top, bottom)) is not None]
            out.append({"master": master, "load": load, "seed": seed, "ratio": ratio,
                        "repeats": len(values),
                        "value": float(np.mean(values)) if values else float("nan"),
                        "per_repeat": [round(v, 4) for v in values]})
    return out


def pooled_ratios(per_stream: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (master, load) and ratio, over the streams that formed it (a stream is one unit):
    mean, 95% t-interval, median, and how many streams were planned."""
    groups: dict[tuple[str, float, str], list[dict[str, Any]]] = defaultdict(list)
    for row in per_stream:
        groups[(row["master"], row["load"], row["ratio"])].append(row)
    out = []
    for (master, load, ratio), group in groups.items():
        formed = [r for r in group if r["repeats"]]
        mean, half, median = _mean_ci_median([r["value"] for r in formed])
        out.append({"master": master, "load": load, "ratio": ratio, "streams": len(formed),
                    "streams_planned": len(group), "mean": mean, "ci95": half,
                    "median": median,
                    "per_stream": {r["seed"]: round(r["value"], 4) for r in formed}})
    return out


def ratio_targets(pooled: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]],
                  masters: Sequence[str], loads: Sequence[float]) -> dict[str, dict[str, Any]]:
    """Every :data:`TARGETS` entry per master and load, judged on the pooled mean; failed with
    the reason when its load was not run, no stream formed the ratio, or a run of that (master,
    load) had failed jobs."""
    by_key = {(p["master"], p["load"], p["ratio"]): p for p in pooled}
    targets: dict[str, dict[str, Any]] = {}
    for master in masters:
        for spec in TARGETS:
            for load in loads if spec.load is None else [spec.load]:
                name = spec.name(master, load)
                if load not in loads:
                    targets[name] = target(None, spec.threshold, "<=",
                                           f"not measured: load {load:g} is not in --loads")
                    continue
                entry = by_key.get((master, load, spec.ratio))
                reason = failed_jobs_reason([r for r in rows if r["master"] == master
                                             and r["load"] == load])
                if entry is None or not entry["streams"]:
                    top, bottom = RATIOS[spec.ratio]
                    reason = (f"no stream has a counted paired block with both {top} and "
                              f"{bottom}")
                targets[name] = target(None if entry is None else entry["mean"],
                                       spec.threshold, "<=", reason)
                if entry is not None:
                    targets[name].update(ci95=entry["ci95"], median=entry["median"],
                                         streams=entry["streams"],
                                         per_stream=entry["per_stream"])
    return targets


def prediction_target(calibration: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]],
                      masters: Sequence[str]) -> dict[str, Any]:
    """Share of held-out jobs whose JCT the executor model predicts within 25% (>= 1); failed
    with the reason when there is no held-out job or a job failed (it has no JCT to predict)."""
    held_out = [c["rel_error"] for c in calibration if c["held_out"]]
    reasons = [r for r in (failed_jobs_reason([row for row in rows if row["master"] == m])
                           for m in masters) if r]
    if not held_out:
        reasons.insert(0, "no held-out job was predicted")
    value = float(np.mean(np.array(held_out) <= 0.25)) if held_out else None
    return target(value, 1.0, ">=", "; ".join(reasons) or None)


def prediction_per_driver_target(calibration: Sequence[dict[str, Any]],
                                 rows: Sequence[dict[str, Any]],
                                 masters: Sequence[str]) -> dict[str, Any]:
    """Issue 26's prediction target: on every master, for every driver, >= 80% of its held-out
    jobs within 25%; the value is the worst (master, driver) share, which it names."""
    shares: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for c in calibration:
        if c["held_out"]:
            shares[(c["master"], c["scheduler"])].append(c["rel_error"] <= 0.25)
    reasons = [r for r in (failed_jobs_reason([row for row in rows if row["master"] == m])
                           for m in masters) if r]
    if not shares:
        return target(None, 0.80, ">=", "; ".join(["no held-out job was predicted", *reasons]))
    worst = min(shares, key=lambda key: np.mean(shares[key]))
    entry = target(float(np.mean(shares[worst])), 0.80, ">=", "; ".join(reasons) or None)
    entry["worst"] = f"{worst[1]} on {worst[0]}"
    return entry


def pace_check(rows: Sequence[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """The pace check in numbers: the band, the runs (attempts), how many were disturbed,
    re-run and excluded, and the drifts seen."""
    paces = [r["drift"] for r in rows]
    return {"tolerance": tolerance, "band": [1.0 / (1.0 + tolerance), 1.0 + tolerance],
            "runs": len(rows), "counted": sum(r["status"] == COUNTED for r in rows),
            "disturbed": sum(r["disturbed"] for r in rows),
            "re_run": sum(r["status"] == RE_RUN for r in rows),
            "excluded": sum(r["status"] == EXCLUDED for r in rows),
            "drift_min": float(np.min(paces)) if paces else float("nan"),
            "drift_max": float(np.max(paces)) if paces else float("nan")}


def _number(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def _pooled_cell(mean: float, half: float, median: float, streams: int) -> str:
    if not streams:
        return "none"
    return f"{_number(mean)} ± {_number(half)}, median {_number(median)} ({streams})"


def ratio_table(per_stream: Sequence[dict[str, Any]], pooled: Sequence[dict[str, Any]],
                master: str, load: float, repeats: int) -> str:
    """One (master, load): a row per stream (its ratios, averaged over its repeats; fewer
    repeats than planned are named) and the pooled row."""
    by_seed: dict[int, dict[str, str]] = defaultdict(dict)
    for r in per_stream:
        if r["master"] == master and r["load"] == load:
            cell = "none" if not r["repeats"] else _number(r["value"])
            if 0 < r["repeats"] < repeats:
                cell += f" ({r['repeats']} of {repeats} repeats)"
            by_seed[r["seed"]][RATIO_HEADERS[r["ratio"]]] = cell
    rows: list[dict[str, str]] = [{"stream": f"seed {seed}", **cells}
                                  for seed, cells in sorted(by_seed.items())]
    rows.append({"stream": "**pooled**", **{
        RATIO_HEADERS[p["ratio"]]: _pooled_cell(p["mean"], p["ci95"], p["median"], p["streams"])
        for p in pooled if p["master"] == master and p["load"] == load}})
    return markdown_table(rows, ["stream", *RATIO_HEADERS.values()])


def jct_table(rows: Sequence[dict[str, Any]], master: str, load: float,
              drivers: Sequence[str]) -> str:
    """One (master, load): mean JCT per stream and driver (counted runs) and the pooled row."""
    group = [r for r in rows if r["master"] == master and r["load"] == load]
    by_driver = {d: stream_means([r for r in group if r["scheduler"] == d], "mean_jct_s")
                 for d in drivers}
    seeds = sorted({r["seed"] for r in group})
    table: list[dict[str, str]] = [
        {"stream": f"seed {seed}", **{d: _number(by_driver[d].get(seed, float("nan")))
                                      for d in drivers}} for seed in seeds]
    table.append({"stream": "**pooled**", **{
        d: _pooled_cell(*_mean_ci_median(list(by_driver[d].values())), len(by_driver[d]))
        for d in drivers}})
    return markdown_table(table, ["stream", *drivers])


def set_aside_text(rows: Sequence[dict[str, Any]], check: dict[str, Any]) -> str:
    """Every run that is not in the ratios, as a table, or the sentence that there is none."""
    band = f"[{check['band'][0]:.2f}, {check['band'][1]:.2f}]"
    aside = [{**r, "load": f"{r['load']:g}"} for r in rows if r["status"] != COUNTED]
    head = (f"{check['runs']} runs, {check['disturbed']} disturbed (probe drift outside "
            f"{band}), {check['re_run']} re-run, {check['excluded']} excluded; drift "
            f"{check['drift_min']:.2f}-{check['drift_max']:.2f}.")
    if not aside:
        return head
    return "\n".join([head, "", markdown_table(
        aside, ["master", "load", "seed", "repeat", "scheduler", "attempt", "drift",
                "mean_jct_s", "failed_jobs", "status"], ".2f")])


def spark_real_markdown(args: argparse.Namespace, plan: Plan, summary: list[dict],
                        per_stream: list[dict], pooled: list[dict], rows: list[dict],
                        check: dict[str, Any], by_scheduler: list[dict], by_query: list[dict],
                        per_master: dict[str, dict[str, Any]], runtime_s: float,
                        load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    """The report's text: the protocol, a ratio and a JCT table per (master, load), the runs
    set aside, the JCT summary, the predictions."""
    from spark_integration.queries import QUERIES

    models = ", ".join(f"{m}: speed {v['model']['speed']:.2f}, contention "
                       f"{v['model']['contention']:.1f}"
                       for m, v in per_master.items() if v["model"]) or "no model fitted"
    error_columns = ["jobs", "median_rel_error", "p90_rel_error", "max_rel_error",
                     "share_within_25pct", "sim_median_rel_error", "sim_share_within_25pct"]
    sections = []
    for master in plan.masters:
        for load in plan.loads:
            sections += [f"## {master}, load {load:g}", "",
                         "Paired ratios (per stream: mean over its repeats; pooled: mean ± "
                         "95% t-interval over streams, median, streams):", "",
                         ratio_table(per_stream, pooled, master, load, plan.repeats), "",
                         "Mean JCT s (per stream: mean over its counted repeats):", "",
                         jct_table(rows, master, load, plan.drivers), ""]
    return "\n".join([
        f"{len(plan.seeds)} stream(s) (seeds {','.join(map(str, plan.seeds))}) x load(s) "
        f"{','.join(f'{x:g}' for x in plan.loads)} of {plan.num_jobs} TPC-H jobs each (scale "
        f"{plan.scale:g}, queries drawn from all {len(QUERIES)}), Poisson arrivals with mean "
        f"gap = the stream's mean isolated job time (timed in the same session) / load; "
        f"{plan.repeats} paired repeat(s): every stream run by every driver back to back, order "
        f"rotating; {plan.executors} executors per master, partition rule "
        f"`{args.partition_rule}`; total runtime {runtime_s:.0f} s; load average (1 min) "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after. Streams are the unit of "
        f"replication: a target is judged on the pooled mean of its (master, load).", "",
        *sections,
        "## Pace check: runs re-run or kept out of the ratios", "",
        set_aside_text(rows, check), "",
        "## Mean JCT and makespan per driver (over streams)", "",
        markdown_table([{**r, "load": f"{r['load']:g}"} for r in summary],
                       ["master", "load", "scheduler", "streams", "runs", "set_aside",
                        "mean_jct_s", "jct_ci95_s", "jct_median_s", "makespan_s", "pace_min",
                        "pace_max", "failed_jobs", "decision_ms_median", "decision_ms_p99"],
                       ".2f"), "",
        "`pace`: the probe queries' time right before a run over their calibration time (1 = "
        "as fast as at calibration); `drift` (the pace check): pace over the session's "
        "reference pace (the median of the probes right after calibration: "
        + ", ".join(f"{m} {v['session'].get('reference_pace', float('nan')):.2f}"
                    for m, v in per_master.items())
        + "). `decision_ms`: wall time of the scheduler's act() per decision on the driver "
        "(median of runs' medians; the largest p99).", "",
        "## Predicted vs measured JCT per job (held-out runs)", "",
        f"Executor model fitted on each master's first counted `fair` run ({models}); "
        f"rel_error columns: executor model; sim_ columns: the task-level SparkDagShop "
        f"simulator on the same in-session templates.", "",
        markdown_table(by_scheduler, ["master", "scheduler", *error_columns]), "",
        markdown_table(by_query, ["master", "query", *error_columns]),
    ])


def decisions_target(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The share of the agent's decisions that differ from
    :data:`benchmarks.spark_real_runs.SHADOW`'s, pooled over the counted agent runs (a failed
    target when there are none); the same-stage share beside."""
    tallies = [r["shadow"] for r in rows
               if r["scheduler"] == "agent" and r["counted"] and r.get("shadow")]
    decisions = sum(t["decisions"] for t in tallies)
    if not decisions:
        return target(None, 0.20, ">=", "not measured: no counted agent run asked a decision")
    differ = 1 - sum(t["same_decision"] for t in tallies) / decisions
    entry = target(differ, 0.20, ">=")
    entry["stage_differs"] = 1 - sum(t["same_stage"] for t in tallies) / decisions
    entry["decisions"] = decisions
    return entry


def all_targets(rows: list[dict], pooled: list[dict], calibration: list[dict], plan: Plan,
                missing: Missing) -> dict[str, dict[str, Any]]:
    """The ratio targets, the decision target (not measured) and the prediction target; each
    not-measured one also as a ``MISSING`` line."""
    targets = ratio_targets(pooled, rows, plan.masters, plan.loads)
    targets["agent_decisions_differ_from_sjf"] = decisions_target(rows)
    targets["sim_jobs_within_25pct_of_measured"] = prediction_target(calibration, rows,
                                                                     plan.masters)
    targets["sim_every_driver_jobs_within_25pct_ge0.8"] = prediction_per_driver_target(
        calibration, rows, plan.masters)
    for name, entry in targets.items():
        if entry.get("reason", "").startswith("not measured"):
            missing.add(f"target {name}", entry["reason"])
    return targets


