"""Spark DAG-shop benchmark: every heuristic on real traces and on contention workloads, the
simulator's speed by job count, batch makespans against lower bounds and CP-SAT optima.

    python -m benchmarks.spark_dag [--decima-tpch DIR] [--quick] [--out DIR]

(``--decima-tpch`` defaults to ``$DECIMA_TPCH``.)

Sections (all with the reference timing rules, ``observation_mode="graph"``):

- ``decima_tpch``: 200-job sequences of Decima's public TPC-H traces (``--decima-tpch``: the
  ``spark_env/tpch`` folder of a decima-sim checkout; not shipped, that repository has no
  licence; without it the section is reported missing), 50 executors, Poisson arrivals of
  mean 25 s, as decima-sim; every heuristic, mean JCT with 95% CIs over seeds and paired
  against ``fair``.
- ``real_traces``: the same on sequences of the shipped real-Spark traces that carry waves
  (``data/spark_traces/*.json``, recorded at several executor counts with measured network
  phases), on the cluster size they were recorded at.
- ``live_traces``: the real-Spark bridge's own system (:class:`envs.spark_dag.LiveSimulator`:
  whole DAG nodes admitted on ``q`` executors, processor sharing) on 20-job streams of every
  trace with per-count node times, on the executors it was recorded at, at
  ``benchmarks.spark_real``'s offered load 1.5, each node taking its measured time alone at
  ``q`` (the trace's per-count calibration).
- ``contention``: online and batch workloads whose network phases contend
  (``TPCHLikeGenerator`` network mix 0.5, capacity 25 of 50 executors' full rate, and a
  stricter one): ``contention_free`` against ``fair``, paired.
- ``bed_traces``: the traces recorded on the multi-slot bed (``tracegen --bed``: several
  executors behind each shaped worker link), with each link carrying the full-rate flows and
  per-flow overhead the contention law measured at that rate (``data/spark_link_law.json``,
  written by ``python -m benchmarks.spark_contention --ship``): ``contention_free`` against
  ``fair`` (and ``sjf``), online mean JCT (load 0.7) and batch makespan (10 jobs at 0),
  paired, at the recorded rate and at 1/2 and 1/4 of it, with the recorded links and with
  every slot behind one link, and the same workloads on an uncontended network (every flow
  at full rate), so the part of a gain that is contention avoidance shows. Targets:
  ``contention_free <= 0.90 x fair`` at each trace's recorded regime (its rate and links;
  one target per trace, named by the rate), and its ratio under the law over
  its ratio uncontended <= 0.90 in the best regime (named). ``--only bed_traces`` runs this
  section alone.
- ``speed``: CPU seconds per episode and decisions per CPU second for 50, 200 and 1000 jobs
  (``fair``), on Decima's traces when given, else the synthetic workloads.
- ``batch`` / ``small``: makespan over the lower bound (10 jobs) and over the CP-SAT optimum
  (2 jobs, no delays).
- ``online``: the benchmark workloads (synthetic TPC-H-like, 50 executors, load 0.85).
The ``agent`` row is the shipped learned policy (``models/spark_dag_policy.json``),
``agent_real`` and ``agent_real_cluster`` (real-trace and live sections) the ones trained in
the live mode on a scale-1 trace of ``local[2]`` and of the 2-worker standalone cluster
(``models/spark_dag_policy_real{,_cluster}.json``, the live bridge's ``agent`` there; each
one's targets are the live sections of the traces it was trained on, :func:`shipped_for`),
``agent_batch`` (batch section) the one trained for makespan on batch instances
(``models/spark_dag_policy_batch.json``; the batch target is its), ``agent_start`` the hand-set
point training starts from. Each policy is loaded with its shape check for the section's
cluster size: a policy that is absent, unreadable or not validated for that size prints a
``MISSING`` line, leaves a failed row with its reason (``"failed"``), and its targets fail.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluate import run_episode
from agents.spark_dag.policy import (
    SHIPPED,
    ScoringPolicy,
    load_policy,
    shortest_work_weights,
    validated_executors,
)
from benchmarks.report import (
    Missing,
    markdown_table,
    mean_ci,
    parse_args,
    print_targets,
    target,
    write_report,
)
from envs.shipped import DATA_DIR
from envs.spark_dag import (
    Job,
    LiveSequenceGenerator,
    LiveSimulator,
    ObservationLimits,
    SparkDagShopEnv,
    TPCHLikeGenerator,
    TraceSequenceGenerator,
    WorkloadError,
    load_decima_tpch,
    load_live_templates,
    load_wave_traces,
    recorded_executors,
    scale_network,
)
from heuristics.spark_dag import HEURISTICS, make_heuristic

TRACES = DATA_DIR / "spark_traces"
LINK_LAW = DATA_DIR / "spark_link_law.json"   # benchmarks.spark_contention --ship
NETWORK_SCALES = (1.0, 2.0, 4.0)   # the bed's link rate, then half and a quarter of it
POLICIES = {"agent": SHIPPED["online"], "agent_real": SHIPPED["real"],
            "agent_real_cluster": SHIPPED["real_cluster"], "agent_real_bed": SHIPPED["real_bed"],
            "agent_batch": SHIPPED["batch"]}
LIVE_POLICIES = ("agent_real", "agent_real_cluster", "agent_real_bed")
TEST_SEED = 20_000  # held-out workloads (training used 0..9_999, validation 10_000..)
DECIMA_CLUSTER = {"num_executors": 50, "moving_delay_s": 2.0, "warmup_s": 1.0}
LIVE_LOAD, LIVE_CONTENTION = 1.5, 0.4  # benchmarks.spark_real's load; the local[2] fit


def graph_env(**config: Any) -> SparkDagShopEnv:
    return SparkDagShopEnv(observation_mode="graph", **config)


def scheduler(name: str, executors: int) -> Any:
    """A heuristic by name, a shipped policy (:data:`POLICIES`, refused for a cluster size it
    was not validated for) or ``agent_start`` (the hand-set point training starts from:
    shortest remaining work at the fair share)."""
    if name in POLICIES:
        return load_policy(POLICIES[name], executors=executors)
    if name == "agent_start":
        return ScoringPolicy(*shortest_work_weights(), source_rule=False)
    return make_heuristic(name)


def runnable(names: Sequence[str], cluster_size: int, missing: Missing, section: str,
             **labels: Any) -> tuple[list[str], list[dict]]:
    """The schedulers of ``names`` that can run on ``cluster_size`` executors, and one failed row (with its
    reason, and a ``MISSING`` line) per shipped policy that is absent or refuses the size."""
    names_ok, failed = [], []
    for name in names:
        if name in POLICIES:
            if not POLICIES[name].exists():
                reason = f"{POLICIES[name]} not found"
            else:
                try:
                    load_policy(POLICIES[name], executors=cluster_size)
                    reason = None
                except ValueError as error:  # ShapeError, or a file that is not a policy
                    reason = str(error)
            if reason is not None:
                where = " ".join(f"{key} {value}" for key, value in labels.items())
                missing.add(f"{name} in {section} {where}".rstrip(), reason)
                failed.append({"section": section, **labels, "scheduler": name,
                               "failed": reason})
                continue
        names_ok.append(name)
    return names_ok, failed


def live_policies(executors: int) -> tuple[str, ...]:
    """The live policies meant for ``executors`` slots (validated for that count), and every
    absent one (so that :func:`runnable` reports it): a policy trained for another cluster
    size is not run there, as ``spark_integration.schedulers.agent_path`` would not pick it."""
    return tuple(name for name in LIVE_POLICIES if not POLICIES[name].exists()
                 or executors in validated_executors(POLICIES[name]))


def shipped_for(policy: str) -> list[str]:
    """The real-Spark traces ``policy`` was trained and validated on (its record): its live-mode
    targets are computed on those only; the other traces' tables show how it carries over.
    Empty when the policy is absent (its targets then fail, :func:`live_policy_targets`)."""
    path = POLICIES[policy]
    if not path.exists():
        return []
    return json.loads(path.read_text()).get("training", {}).get("real_traces", [])


def all_schedulers(*agents: str) -> tuple[str, ...]:
    """Every heuristic, the training start, ``agent`` and the other shipped policies named
    (:func:`runnable` says which of the policies can run)."""
    return (*HEURISTICS, "agent_start", "agent", *agents)


def compare(env: SparkDagShopEnv, workloads: Sequence[list[Job]], section: str,
            missing: Missing, names: Sequence[str] = tuple(HEURISTICS),
            **labels: Any) -> list[dict]:
    """Every scheduler on every workload (same seed for the duration draws); a policy that
    cannot run on this cluster is one failed row."""
    executors = env.cluster.num_executors
    names, rows = runnable(names, executors, missing, section, **labels)
    for seed, jobs in enumerate(workloads):
        for name in names:
            info = run_episode(env, scheduler(name, executors), seed=seed,
                               options={"instance": jobs})
            rows.append({"section": section, **labels, "seed": seed, "scheduler": name,
                         "mean_jct_s": info["mean_jct_s"], "makespan_s": info["makespan_s"],
                         "executor_moves": info["executor_moves"],
                         "invalid_actions": info["invalid_actions"]})
    return rows


def summarize(rows: list[dict], objective: str = "mean_jct_s") -> list[dict]:
    by_name: dict[str, list[dict]] = {}
    for row in rows:
        if "failed" not in row:
            by_name.setdefault(row["scheduler"], []).append(row)
    fair = {r["seed"]: r[objective] for r in by_name["fair"]}
    table = []
    for name, entries in by_name.items():
        mean, half = mean_ci([r[objective] for r in entries])
        rel_mean, rel_half = mean_ci([r[objective] / fair[r["seed"]] - 1 for r in entries])
        table.append({"scheduler": name, objective: mean, "ci95": half,
                      "vs_fair_pct": 100 * rel_mean, "vs_fair_ci95_pct": 100 * rel_half,
                      "executor_moves": float(np.mean([r["executor_moves"] for r in entries])),
                      "seeds": len(entries)})
    return sorted(table, key=lambda r: r[objective])


def bench_real_traces(num_jobs: int, seeds: int, missing: Missing
                      ) -> tuple[list[dict], dict[str, list[dict]]]:
    rows, tables = [], {}
    for name, templates in load_wave_traces(TRACES).items():
        counts = sorted({c for job in templates for s in job.stages for c in s.waves})
        executors = int(max(counts))
        mean_work = float(np.mean([job.work_s for job in templates]))
        # arrivals at offered load ~0.7 of the recorded cluster
        gap = mean_work / (0.7 * executors)
        generator = TraceSequenceGenerator(templates, num_jobs=num_jobs, mean_interarrival_s=gap)
        workloads = [generator(np.random.default_rng(TEST_SEED + s)) for s in range(seeds)]
        # one executor per worker link when recorded (the links carry E full-rate phases),
        # unless the trace comes from the multi-slot bed: then its links under the law
        try:
            network = bed_network(name) or {"capacity": float(executors), "beta": 0.0}
        except (OSError, ValueError, KeyError) as error:
            missing.add(f"real_traces {name}", str(error))
            continue
        env = graph_env(num_executors=executors, moving_delay_s=0.0, warmup_s=0.0,
                        network_capacity=network["capacity"],
                        network_flow_overhead=network["beta"])
        cell = compare(env, workloads, "real_traces", missing,
                       names=all_schedulers(*live_policies(executors)), trace=name,
                       executors=executors)
        rows += cell
        tables[name] = summarize(cell)
    return rows, tables


def bed_network(trace: str) -> dict[str, float] | None:
    """The network a trace recorded on the multi-slot bed ran on: its worker links, each
    carrying the full-rate flows the contention law measured at the bed's link rate
    (:data:`LINK_LAW`), and the law's per-flow overhead; ``None`` for a trace without a bed.
    A bed rate with no measured law is a ValueError naming the command that measures it."""
    bed = json.loads((TRACES / trace).read_text()).get("source", {}).get("bed")
    if not bed:
        return None
    if not LINK_LAW.exists():
        raise ValueError(f"{LINK_LAW} not found: run python -m benchmarks.spark_contention "
                         f"--ship")
    law = json.loads(LINK_LAW.read_text())["rates"].get(f"{bed['link_mbps']:g}")
    if law is None:
        raise ValueError(f"{LINK_LAW}: no law measured at {bed['link_mbps']:g} Mbit/s, the rate "
                         f"{trace} was recorded at (benchmarks.spark_contention --rates "
                         f"{bed['link_mbps']:g} --ship)")
    return {"links": bed["workers"], "capacity": bed["workers"] * law["flows_per_link"],
            "beta": law["beta"], "link_mbps": bed["link_mbps"]}


def bed_workloads(templates: list[Job], mode: str, num_jobs: int, executors: int,
                  seeds: int) -> list[list[Job]]:
    """Online: sequences at offered load 0.7 of the recorded cluster; batch: ten jobs at 0."""
    gap = float(np.mean([job.work_s for job in templates])) / (0.7 * executors)
    generator = TraceSequenceGenerator(templates, num_jobs=num_jobs if mode == "online" else 10,
                                       mean_interarrival_s=gap if mode == "online" else 0.0)
    return [generator(np.random.default_rng(TEST_SEED + s)) for s in range(seeds)]


def paired_ratio(cell: list[dict], mode: str, seeds: int) -> list[float]:
    """contention_free / fair per seed on the mode's objective."""
    objective = "mean_jct_s" if mode == "online" else "makespan_s"
    by = {(r["scheduler"], r["seed"]): r[objective] for r in cell}
    return [by[("contention_free", s)] / by[("fair", s)] for s in range(seeds)]


def bench_bed_traces(num_jobs: int, seeds: int, missing: Missing
                     ) -> tuple[list[dict], list[dict]]:
    """contention_free against fair (and sjf) on the traces recorded on the multi-slot bed,
    under the measured link law, at the recorded link rate and slower ones
    (:data:`NETWORK_SCALES`), with the recorded links and with every slot behind one link."""
    rows, summary = [], []
    for name, templates in load_wave_traces(TRACES).items():
        try:
            network = bed_network(name)
        except (OSError, ValueError, KeyError) as error:
            missing.add(f"bed_traces {name}", str(error))
            continue
        if network is None:
            continue
        executors = int(max(c for job in templates for s in job.stages for c in s.waves))
        for factor in NETWORK_SCALES:
            scaled = scale_network(templates, factor)
            for links in sorted({int(network["links"]), 1}, reverse=True):
                capacity = network["capacity"] * links / network["links"]
                for mode in ("online", "batch"):
                    labels = {"trace": name, "mode": mode, "link_mbps":
                              network["link_mbps"] / factor, "slots_per_link":
                              executors // links}
                    workloads = bed_workloads(scaled, mode, num_jobs, executors, seeds)
                    ratios = {}
                    # the same workloads on a network nobody waits for: what is left of
                    # contention_free's gain there is not contention avoidance
                    for network_name, cap, beta in (
                            ("law", capacity, network["beta"]),
                            ("uncontended", float(executors), 0.0)):
                        env = graph_env(mode=mode, num_executors=executors,
                                        moving_delay_s=0.0, warmup_s=0.0,
                                        network_capacity=cap, network_flow_overhead=beta)
                        cell = compare(env, workloads, "bed_traces", missing,
                                       names=("fair", "contention_free", "sjf"),
                                       network=network_name, **labels)
                        rows += cell
                        ratios[network_name] = paired_ratio(cell, mode, seeds)
                    mean, half = mean_ci(ratios["law"])
                    summary.append({**labels, "contention_free_over_fair": mean, "ci95": half,
                                    "median": float(np.median(ratios["law"])),
                                    "uncontended": float(np.mean(ratios["uncontended"])),
                                    "seeds": seeds})
    return rows, summary


def bench_live_traces(num_jobs: int, seeds: int, missing: Missing
                      ) -> tuple[list[dict], dict[str, list[dict]]]:
    """Live-mode streams (:class:`LiveSimulator`: nodes admitted whole, processor sharing) of
    every trace with per-count node times, on the executors it was recorded at
    (:func:`recorded_executors`), at ``benchmarks.spark_real``'s offered load 1.5 and the
    contention fitted on local[2] (0.4): the real-Spark bridge's system."""
    rows, tables = [], {}
    for name in sorted(load_wave_traces(TRACES)):
        try:
            templates = load_live_templates(TRACES / name)
        except WorkloadError as error:
            missing.add(f"live_traces {name}", str(error))
            continue
        executors = recorded_executors(templates)
        names, failed = runnable([*HEURISTICS, *live_policies(executors)], executors, missing,
                                 "live_traces", trace=name)
        rows += failed
        generator = LiveSequenceGenerator(templates, num_jobs=num_jobs, load=LIVE_LOAD,
                                          num_executors=executors)
        for seed in range(seeds):
            jobs = generator(np.random.default_rng(TEST_SEED + seed))
            for scheduler_name in names:
                run = LiveSimulator(executors, ObservationLimits(),
                                    contention=LIVE_CONTENTION).run(
                    jobs, scheduler(scheduler_name, executors))
                rows.append({"section": "live_traces", "trace": name, "seed": seed,
                             "executors": executors, "scheduler": scheduler_name,
                             "mean_jct_s": run.mean_jct_s,
                             "makespan_s": max(n.end_s for n in run.nodes) - jobs[0].arrival_s,
                             "executor_moves": float("nan"),  # not a live-mode notion
                             "invalid_actions": run.invalid_actions})
        tables[name] = summarize([r for r in rows if r["trace"] == name])
    return rows, tables


def bench_online(num_jobs: int, seeds: int, missing: Missing) -> list[dict]:
    """The benchmark workloads: synthetic online TPC-H-like jobs, 50 executors, load 0.85."""
    env = graph_env(mode="online", num_jobs=num_jobs, num_executors=50, load=0.85)
    workloads = [env.generator(np.random.default_rng(TEST_SEED + s)) for s in range(seeds)]
    return compare(env, workloads, "online", missing, names=all_schedulers())


def agent_targets(tables: dict[str, tuple[str, list[dict]]], batch: list[dict]
                  ) -> dict[str, dict]:
    """Issue 13's simulator targets, for the section's agent (``tables``: section -> (agent
    name, table)): agent <= 0.90 x fair (paired per workload) and <= 0.95 x the best
    heuristic (online sections), batch makespan <= the best heuristic's. The training
    start (``agent_start``) is not a heuristic of the library; ``agent_vs_start`` says what
    training added to it."""
    result = {}
    for section, (agent_name, table) in tables.items():
        by_name = {r["scheduler"]: r for r in table}
        agent, start = by_name.get(agent_name), by_name.get("agent_start")
        best = min((r for r in table if r["scheduler"] in HEURISTICS),
                   key=lambda r: r["mean_jct_s"], default=None)
        absent = None if agent else f"no {agent_name} rows in {section} (see MISSING lines)"
        vs_fair = 1 + agent["vs_fair_pct"] / 100 if agent else None
        vs_best = agent["mean_jct_s"] / best["mean_jct_s"] if agent and best else None
        result[f"agent_vs_fair_{section}"] = target(vs_fair, 0.90, "<=", absent)
        result[f"agent_vs_best_heuristic_{section}"] = target(vs_best, 0.95, "<=", absent)
        if start:  # the live sections start from sjf itself (a heuristic row)
            vs_start = agent["mean_jct_s"] / start["mean_jct_s"] if agent else None
            result[f"agent_vs_start_{section}"] = target(vs_start, 1.0, "<=", absent)
    by_name = {r["scheduler"]: r for r in batch}
    best_batch = min(r["mean_over_bound"] for r in batch if r["scheduler"] in HEURISTICS)
    agent_batch = by_name.get("agent_batch")
    result["agent_batch_makespan_vs_best_heuristic"] = target(
        agent_batch["mean_over_bound"] / best_batch if agent_batch else None, 1.0, "<=",
        None if agent_batch else "no agent_batch rows in batch (see MISSING lines)")
    return result


def live_policy_targets(traces: Sequence[str]) -> dict[str, dict]:
    """A failed target for each live policy with no trace to be judged on (absent, or its
    record names none of the live section's traces): its live targets are never silently
    dropped."""
    result = {}
    for policy in LIVE_POLICIES:
        if not set(shipped_for(policy)) & set(traces):
            reason = (f"{POLICIES[policy]} not found" if not POLICIES[policy].exists() else
                      "its record names none of the live section's traces")
            result[f"{policy}_live_targets"] = target(None, 0.90, "<=", reason)
    return result


def bench_contention(num_jobs: int, seeds: int, missing: Missing
                     ) -> tuple[list[dict], list[dict]]:
    rows, summary = [], []
    settings = [("online", 25.0, 0.5), ("online", 10.0, 0.8), ("batch", 25.0, 0.5),
                ("batch", 10.0, 0.8)]
    for mode, capacity, mix in settings:
        env = graph_env(mode=mode, num_jobs=num_jobs, num_executors=50, load=0.85,
                        network_capacity=capacity, network_mix=mix)
        workloads = [env.generator(np.random.default_rng(TEST_SEED + s)) for s in range(seeds)]
        cell = compare(env, workloads, "contention", missing, names=("fair", "contention_free"),
                       mode=mode, capacity=capacity, network_mix=mix)
        rows += cell
        objective = "mean_jct_s" if mode == "online" else "makespan_s"
        ratio = [c[objective] / f[objective] for f, c in zip(cell[0::2], cell[1::2], strict=True)]
        mean, half = mean_ci(ratio)
        summary.append({"mode": mode, "capacity": capacity, "network_mix": mix,
                        "objective": objective, "contention_free_over_fair": mean,
                        "ci95": half, "seeds": seeds})
    return rows, summary


def bench_speed(decima: list[Job] | None, job_counts: Sequence[int], episodes: int
                ) -> list[dict]:
    rows = []
    for num_jobs in job_counts:
        for episode in range(episodes):
            rng = np.random.default_rng(TEST_SEED + episode)
            if decima is not None:
                jobs = TraceSequenceGenerator(decima, num_jobs=num_jobs)(rng)
                env, source = graph_env(**DECIMA_CLUSTER), "decima_tpch"
            else:
                env = graph_env(mode="online", num_jobs=num_jobs, num_executors=50, load=0.7)
                jobs, source = env.generator(rng), "synthetic"
            cpu, wall = time.process_time(), time.perf_counter()
            info = run_episode(env, make_heuristic("fair"), seed=episode,
                               options={"instance": jobs})
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            rows.append({"section": "speed", "source": source, "jobs": num_jobs,
                         "episode": episode, "tasks": env.sim.num_tasks_total,
                         "decisions": info["decisions"], "cpu_s": cpu, "wall_s": wall,
                         "decisions_per_cpu_s": info["decisions"] / cpu,
                         "cpu_ms_per_job": 1000 * cpu / num_jobs})
    return rows


def speed_table(rows: list[dict]) -> list[dict]:
    table = []
    for num_jobs in sorted({r["jobs"] for r in rows}):
        cell = [r for r in rows if r["jobs"] == num_jobs]
        table.append({"jobs": num_jobs, "source": cell[0]["source"],
                      "tasks": int(np.median([r["tasks"] for r in cell])),
                      "cpu_s_median": float(np.median([r["cpu_s"] for r in cell])),
                      "decisions": int(np.median([r["decisions"] for r in cell])),
                      "decisions_per_cpu_s": float(np.median([r["decisions_per_cpu_s"]
                                                              for r in cell])),
                      "cpu_ms_per_job": float(np.median([r["cpu_ms_per_job"] for r in cell])),
                      "episodes": len(cell)})
    return table


def bench_batch(instances: int, missing: Missing) -> list[dict]:
    from heuristics.exact.spark_dag import spark_makespan_lower_bound

    env = graph_env(mode="batch", num_jobs=10, num_executors=20, network_capacity=7.5,
                    network_mix=0.5, duration_model="fixed")
    executors = env.cluster.num_executors
    names, rows = runnable(all_schedulers("agent_batch"), executors, missing, "batch")
    for seed in range(instances):
        jobs = env.generator(np.random.default_rng(TEST_SEED + seed))
        bound = spark_makespan_lower_bound(jobs, env.cluster)
        for name in names:
            info = run_episode(env, scheduler(name, executors), options={"instance": jobs})
            rows.append({"section": "batch", "seed": seed, "scheduler": name,
                         "makespan_s": info["makespan_s"], "lower_bound_s": bound,
                         "over_bound": info["makespan_s"] / bound})
    return rows


def bench_small(count: int, time_limit_s: float) -> list[dict]:
    from heuristics.exact.spark_dag import spark_optimal_makespan

    generator = TPCHLikeGenerator(num_jobs=2, mode="batch", median_stages=3, max_stages=4,
                                  median_tasks=3, max_tasks=6, task_skew=0.0, network_mix=0.5)
    env = graph_env(mode="batch", num_executors=3, network_capacity=1.0, moving_delay_s=0.0,
                    warmup_s=0.0, generator=generator)
    rows = []
    for seed in range(count):
        jobs = generator(np.random.default_rng(TEST_SEED + seed))
        exact = spark_optimal_makespan(jobs, env.cluster, time_limit_s=time_limit_s,
                                       resolution_s=0.1)
        for name in HEURISTICS:
            info = run_episode(env, make_heuristic(name), options={"instance": jobs})
            rows.append({"section": "small", "seed": seed, "scheduler": name,
                         "tasks": exact.num_tasks, "makespan_s": info["makespan_s"],
                         "cpsat_s": exact.makespan_s, "cpsat_optimal": exact.optimal,
                         "over_cpsat": info["makespan_s"] / exact.makespan_s})
    return rows


def ratio_table(rows: list[dict], column: str) -> list[dict]:
    by_name: dict[str, list[float]] = {}
    for row in rows:
        if "failed" not in row:
            by_name.setdefault(row["scheduler"], []).append(row[column])
    table = []
    for name, values in by_name.items():
        mean, half = mean_ci(values)
        table.append({"scheduler": name, f"mean_{column}": mean, "ci95": half,
                      "max": float(np.max(values)), "instances": len(values)})
    return sorted(table, key=lambda r: r[f"mean_{column}"])


JCT_COLUMNS = ["scheduler", "mean_jct_s", "ci95", "vs_fair_pct", "vs_fair_ci95_pct",
               "executor_moves", "seeds"]


@dataclass
class Report:
    """What the sections add up to: every row, the markdown sections and the JSON extras."""

    rows: list[dict] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spark_dag")
    parser.add_argument("--decima-tpch", type=Path,
                        default=Path(os.environ["DECIMA_TPCH"]) if os.environ.get(
                            "DECIMA_TPCH") else None,
                        help="Decima's TPC-H traces (spark_env/tpch of a decima-sim checkout; "
                             "default $DECIMA_TPCH)")
    parser.add_argument("--only", choices=["bed_traces"],
                        help="run this section alone (its targets only)")
    return parser


def decima_section(report: Report, decima: list[Job] | None, quick: bool, seeds: int,
                   missing: Missing) -> list[dict]:
    """Every scheduler on Decima's TPC-H sequences (reported missing without them)."""
    decima_table: list[dict] = []
    if decima is not None:
        generator = TraceSequenceGenerator(decima, num_jobs=50 if quick else 200)
        workloads = [generator(np.random.default_rng(TEST_SEED + s)) for s in range(seeds)]
        decima_rows = compare(graph_env(**DECIMA_CLUSTER), workloads, "decima_tpch", missing,
                              names=all_schedulers())
        report.rows += decima_rows
        decima_table = summarize(decima_rows)
        report.sections += [f"## Decima TPC-H sequences ({generator.num_jobs} jobs, 50 "
                            f"executors, mean gap 25 s, {seeds} seeds)", "",
                            markdown_table(decima_table, JCT_COLUMNS, ".1f"), ""]
    else:
        report.sections += ["## Decima TPC-H sequences", "", "**missing**: run with "
                            "`--decima-tpch DIR` (Decima's public traces are not shipped).", ""]
    report.extra["decima_tpch_summary"] = decima_table
    return decima_table


def real_trace_section(report: Report, quick: bool, seeds: int, missing: Missing) -> None:
    """Every scheduler on the shipped real-Spark traces that carry waves."""
    real_rows, real_tables = bench_real_traces(20 if quick else 60, seeds, missing)
    report.rows += real_rows
    report.extra["real_trace_summary"] = real_tables
    if not real_tables:
        report.sections += ["## Real-Spark traces", "", "**missing**: no shipped trace in "
                            "data/spark_traces/ carries waves.", ""]
    for name, table in real_tables.items():
        executors = next(r["executors"] for r in real_rows if r["trace"] == name)
        report.sections += [f"## Real-Spark traces: `{name}` ({executors} executors, offered "
                            f"load 0.7, no moving delay or warm-up beyond the measured waves)",
                            "", markdown_table(table, JCT_COLUMNS, ".2f"), ""]


def live_trace_section(report: Report, quick: bool, missing: Missing) -> dict[str, list[dict]]:
    """Every scheduler in live mode on the live traces; the tables by trace."""
    live_rows, live_tables = bench_live_traces(20, 4 if quick else 10, missing)
    report.rows += live_rows
    report.extra["live_trace_summary"] = live_tables
    executors = {r["trace"]: r["executors"] for r in live_rows if "executors" in r}
    for name, table in live_tables.items():
        report.sections += [
            f"## Live mode: `{name}` ({executors[name]} executors, 20 jobs at offered "
            f"load {LIVE_LOAD:g} as "
            f"benchmarks.spark_real, contention {LIVE_CONTENTION:g}; nodes admitted whole as "
            f"the live Spark bridge runs them)", "",
            markdown_table(table, [c for c in JCT_COLUMNS if c != "executor_moves"], ".2f"),
            ""]
    return live_tables


def bed_section(report: Report, quick: bool, seeds: int, missing: Missing) -> dict[str, dict]:
    """contention_free / fair on the bed's traces; the thesis's targets, at the recorded rate
    and links and in the best regime found."""
    rows, summary = bench_bed_traces(20 if quick else 40, seeds, missing)
    report.rows += rows
    report.extra["bed_summary"] = summary
    if not summary:
        report.sections += ["## Traces of the multi-slot bed", "", "**missing**: no shipped "
                            "trace carries a bed (spark_integration.tracegen --bed).", ""]
        return {f"contention_free_over_fair_{m}_bed": target(None, 0.90, "<=", "no bed trace")
                for m in ("online", "batch")}
    report.sections += ["## Traces of the multi-slot bed: contention_free / fair (paired, "
                        "measured link law)", "", markdown_table(summary, list(summary[0]),
                                                                 ".3f"), ""]
    return bed_targets(summary)


def bed_targets(summary: Sequence[dict]) -> dict[str, dict]:
    """The thesis's targets from the bed summary: ``contention_free / fair`` at each trace's
    recorded regime, and its gain from the network in the best regime of any trace."""
    targets = {}
    for mode in ("online", "batch"):
        cells = [r for r in summary if r["mode"] == mode]
        # each trace at its recorded regime: its own rate (the fastest of its cells) and links
        for trace in sorted({r["trace"] for r in cells}):
            recorded = max((r for r in cells if r["trace"] == trace),
                           key=lambda r: (r["link_mbps"], -r["slots_per_link"]))
            targets[f"contention_free_over_fair_{mode}_bed_{recorded['link_mbps']:g}mbit"] = \
                target(recorded["contention_free_over_fair"], 0.90, "<=")
        best = min(cells, key=lambda r: r["contention_free_over_fair"] / r["uncontended"])
        # the thesis's claim is about contention: the gain over the same policy's ratio on an
        # uncontended network, in the regime where it is largest
        targets[f"contention_free_gain_from_the_network_{mode}_best_regime"] = target(
            best["contention_free_over_fair"] / best["uncontended"], 0.90, "<=")
        targets[f"contention_free_gain_from_the_network_{mode}_best_regime"]["regime"] = (
            f"{best['trace']}: {best['link_mbps']:g} Mbit/s, {best['slots_per_link']} slots "
            f"per link")
    return targets


def online_section(report: Report, quick: bool, missing: Missing) -> list[dict]:
    """Every scheduler on the online benchmark workloads; the summary table."""
    online_rows = bench_online(20 if quick else 30, 3 if quick else 8, missing)
    report.rows += online_rows
    online_table = summarize(online_rows)
    report.extra["online_summary"] = online_table
    report.sections += ["## Benchmark workloads, online (TPC-H-like, 50 executors, load "
                        "0.85)", "", markdown_table(online_table, JCT_COLUMNS, ".1f"), ""]
    return online_table


def contention_section(report: Report, quick: bool, seeds: int, missing: Missing) -> None:
    """contention_free against fair on the contention workloads, paired."""
    contention_rows, contention = bench_contention(15 if quick else 30, seeds + 1, missing)
    report.rows += contention_rows
    report.extra["contention_summary"] = contention
    report.sections += ["## Contention workloads: contention_free / fair (paired)", "",
                        markdown_table(contention, list(contention[0]), ".3f"), ""]


def speed_section(report: Report, decima: list[Job] | None, quick: bool) -> list[dict]:
    """The simulator's CPU time per episode by job count; the speed table."""
    speed_rows = bench_speed(decima, (50, 200) if quick else (50, 200, 1000), 1 if quick else 3)
    report.rows += speed_rows
    speed = speed_table(speed_rows)
    report.extra["speed_summary"] = speed
    report.sections += ["## Simulator speed (fair; CPU seconds of one core per episode)", "",
                        markdown_table(speed, list(speed[0]), ".2f"), "",
                        "decima-sim's CPU on the same sequences: "
                        "`python -m benchmarks.spark_reference`.", ""]
    return speed


def batch_sections(report: Report, quick: bool, missing: Missing) -> list[dict]:
    """Batch makespans against the lower bound and small instances against CP-SAT; the batch
    table."""
    batch_rows = bench_batch(3 if quick else 6, missing)
    small_rows = bench_small(3 if quick else 6, 5.0 if quick else 10.0)
    report.rows += batch_rows + small_rows
    batch_table, small_table = ratio_table(batch_rows, "over_bound"), ratio_table(
        small_rows, "over_cpsat")
    report.sections += ["## Batch makespan / lower bound (10 jobs, 20 executors, C = 7.5, "
                        "fixed durations)", "", markdown_table(batch_table, list(batch_table[0])),
                        "", "## Small batch instances: makespan / CP-SAT (2 jobs, 3 executors, "
                        "no delays)", "", markdown_table(small_table, list(small_table[0])), ""]
    return batch_table


def spark_targets(speed: list[dict], online_table: list[dict], decima_table: list[dict],
                  live_tables: dict[str, list[dict]], batch_table: list[dict]
                  ) -> dict[str, dict]:
    """The simulator's per-job CPU growth, the agents' and the live policies' targets."""
    by_jobs = {r["jobs"]: r for r in speed}
    largest, base = max(by_jobs), sorted(by_jobs)[-2]
    linear = by_jobs[largest]["cpu_ms_per_job"] / by_jobs[base]["cpu_ms_per_job"]
    targets = {f"cpu_per_job_{largest}_over_{base}_jobs": target(linear, 1.5, "<=")}
    agent_tables = {"online": ("agent", online_table),
                    **({"decima_tpch": ("agent", decima_table)} if decima_table else {}),
                    **{f"live_{name}": (policy, table) for policy in LIVE_POLICIES
                       for name, table in live_tables.items() if name in shipped_for(policy)}}
    targets.update(agent_targets(agent_tables, batch_table))
    targets.update(live_policy_targets(list(live_tables)))
    return targets


def finish(report: Report, targets: dict[str, dict], missing: Missing, out: Path,
           name: str) -> None:
    """Write ``<name>.json`` / ``.md`` and print the sections and targets."""
    report.extra["missing"] = missing.entries
    write_report(name, out, report.rows, targets, "\n".join(report.sections), extra=report.extra)
    print("\n".join(report.sections))
    print_targets(targets)


def main(argv: list[str] | None = None) -> None:
    args = parse_args("spark_dag", argv, build_parser())
    quick, out = args.quick, Path(args.out)
    decima, missing = None, Missing()
    if args.decima_tpch is not None:
        decima = load_decima_tpch(args.decima_tpch)
    else:
        missing.add("decima_tpch section", "--decima-tpch not given (speed is measured on "
                    "synthetic workloads)")
    seeds = 2 if quick else 5
    report = Report()
    if args.only == "bed_traces":
        finish(report, bed_section(report, quick, seeds, missing), missing, out,
               "spark_dag_bed")
        return
    decima_table = decima_section(report, decima, quick, seeds, missing)
    real_trace_section(report, quick, seeds, missing)
    live_tables = live_trace_section(report, quick, missing)
    online_table = online_section(report, quick, missing)
    contention_section(report, quick, seeds, missing)
    speed = speed_section(report, decima, quick)
    batch_table = batch_sections(report, quick, missing)
    targets = spark_targets(speed, online_table, decima_table, live_tables, batch_table)
    targets.update(bed_section(report, quick, seeds, missing))
    if decima_table:
        best = min((r for r in decima_table if r["scheduler"] in HEURISTICS),
                   key=lambda r: r["mean_jct_s"])
        report.extra["decima_best_heuristic"] = best["scheduler"]
    finish(report, targets, missing, out, "spark_dag")


if __name__ == "__main__":
    main()
