"""The Spark DAG-shop part of ``algo: cmaes`` (:mod:`agents.algos.cmaes`): what a candidate is,
the workloads it is scored on, and the saved policy.

    python train_agents.py train --env pipesched/SparkDagShop-v0 [--set cmaes.KEY=VALUE ...]

The keys of the entry's ``cmaes:`` section are the fields of :class:`Settings` (see
docs/training.md). The policy (:class:`agents.spark_dag.policy.ScoringPolicy`) scores every
schedulable stage of the whole graph and picks a parallelism limit relative to the fair share.
It starts either at ``fair`` exactly (:func:`fair_weights`, with the source rule) or, by
default, at shortest remaining work first at the fair share without the source rule
(:func:`shortest_work_weights`), a hand-set point that is already 10-20% below fair on mean
JCT, or (``shortest_work_x2``) the same at twice the fair share, which on 2 executors is
``sjf``; the record says which. A candidate is the 26 weights; its score is the mean over the
generation's training workloads (drawn anew each generation, the same duration seeds for every
candidate) of its objective relative to ``fair``'s on that workload (mean JCT online, makespan
in batch). CMA-ES adapts its step sizes and their correlations, which a plain OpenAI-ES with
one sigma could not (it left the limit weights nearly where they started; see
docs/spark_dag.md). Validation plays the distribution's mean on held-out workloads.

A requested kind whose data is missing (``decima`` without ``cmaes.decima_tpch``, a trace kind
without traces) is refused before training starts, never dropped. Workloads, in turn:
synthetic online workloads shaped like Decima's TPC-H jobs
(``TPCHLikeGenerator``, 50 executors, loads 0.5..0.95, 20..40 jobs); with ``decima_tpch``,
50..100-job sequences of Decima's traces (50 executors); 20..60-job sequences of the
shipped real-Spark traces on 2 executors (the ``local[2]`` shape, no move cost); with
kind ``live``, 15..40-job streams of a trace played in the live mode
(:class:`envs.spark_dag.LiveSimulator`: whole DAG nodes on ``q`` executors with their measured
times at ``q``, as the real-Spark bridge runs them; on as many executors as the trace was
recorded at, 1..E; loads ``trace_load_min``..``max``, contention 0.2..0.6), which is how the
real-Spark policies are trained; and batch instances of the benchmark's batch shape (10 jobs,
20 executors), judged by makespan. The policy file records the executor counts it was
validated on, and the training record (every setting, seed, the wall time and the validation
curve) under ``training``.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.algos.cmaes import CmaesProblem
from agents.algos.record import TrainRun
from agents.evaluate import incomplete_reason, run_episode
from agents.spark_dag.policy import (
    STAGE_FEATURES,
    ScoringPolicy,
    fair_weights,
    shortest_work_weights,
)
from envs.shipped import DATA_DIR
from envs.spark_dag import (
    Job,
    LiveSequenceGenerator,
    LiveSimulator,
    NodeJob,
    ObservationLimits,
    SparkDagShopEnv,
    TPCHLikeGenerator,
    TraceSequenceGenerator,
    load_decima_tpch,
    load_live_templates,
    load_wave_traces,
    recorded_executors,
)
from heuristics.spark_dag import make_heuristic

TRAIN_SEED, VALIDATION_SEED = 0, 10_000  # the benchmarks use 20_000+
INITS = {"fair": fair_weights, "shortest_work": shortest_work_weights,
         "shortest_work_x2": functools.partial(shortest_work_weights, 2.0)}
TRACES = DATA_DIR / "spark_traces"


@dataclass(frozen=True)
class Workload:
    """One training or validation episode: jobs, the env's cluster settings, the duration seed
    and the objective it is judged by."""

    jobs: list[Job] | list[NodeJob]
    cluster: dict[str, Any]
    seed: int
    objective: str = "mean_jct_s"
    live_contention: float | None = None  # set: a live-mode stream (NodeJobs, LiveSimulator)

    @property
    def executors(self) -> int:
        return int(self.cluster["num_executors"])


DECIMA_CLUSTER = {"num_executors": 50, "moving_delay_s": 2.0, "warmup_s": 1.0}
# the benchmark's batch cluster (benchmarks.spark_dag); training draws other instances
BATCH_CLUSTER = {"mode": "batch", "num_jobs": 10, "num_executors": 20, "network_capacity": 7.5,
                 "network_mix": 0.5, "duration_model": "fixed"}


KINDS = ("synthetic", "decima", "real", "trace", "live", "batch")
DEFAULT_KINDS = ("synthetic", "decima", "real", "batch")
#: the kinds that need data, and what supplies it
DATA_OF_KIND = {"decima": "cmaes.decima_tpch=DIR (Decima's TPC-H traces)",
                "real": f"cmaes.real_traces=[FILE, ...] (traces with waves in {TRACES})",
                "trace": f"cmaes.real_traces=[FILE, ...] (traces with waves in {TRACES})",
                "live": f"cmaes.real_traces=[FILE, ...] (traces with waves in {TRACES})"}
#: the old command's default that the entry changed (the entry leaves decima out: its traces
#: are not shipped)
OLD_DEFAULTS = {"kinds": ",".join(DEFAULT_KINDS)}
REAL_CLUSTER = {"num_executors": 2, "moving_delay_s": 0.0, "warmup_s": 0.0}
# live-mode slowdown per other running node: fitted 0.4 on local[2] (benchmarks.spark_real);
# drawn around it so that the policy does not lean on one machine's figure
LIVE_CONTENTION = (0.2, 0.6)


def kinds_problem(kinds: tuple[str, ...], decima: list[Job] | None,
                  traces: dict[str, list[Job]]) -> str | None:
    """Why ``kinds`` cannot be trained on with this data (an unknown kind, or a kind whose
    data is missing: it names what supplies it), or None."""
    if not kinds:
        return f"cmaes.kinds: no kind given (known: {', '.join(KINDS)})"
    if unknown := sorted(set(kinds) - set(KINDS)):
        return f"cmaes.kinds: unknown {', '.join(unknown)} (known: {', '.join(KINDS)})"
    present = {"decima": bool(decima), "real": bool(traces), "trace": bool(traces),
               "live": bool(traces)}
    for kind in kinds:
        if not present.get(kind, True):
            return (f"cmaes.kinds: kind {kind!r} has no data; give {DATA_OF_KIND[kind]} or "
                    f"drop it from cmaes.kinds")
    return None


def make_workloads(count: int, base_seed: int, decima: list[Job] | None,
                   traces: dict[str, list[Job]], kinds: tuple[str, ...] = DEFAULT_KINDS,
                   trace_load: tuple[float, float] = (0.5, 0.95)) -> list[Workload]:
    """Cycles through the shapes: synthetic online (E = 50), Decima sequences (E = 50, if
    given), real-Spark trace sequences (E = 2, no move cost: executors are slots of one JVM;
    ``real`` draws each sequence from all traces' jobs pooled, ``trace`` from one trace at a
    time, in turn, as the benchmark does; offered load uniform in ``trace_load``) and batch
    instances judged by makespan (E = 20);
    ``kinds`` selects among them; a kind without its data is a ValueError, never dropped."""
    if problem := kinds_problem(kinds, decima, traces):
        raise ValueError(problem)
    pooled = [job for jobs in traces.values() for job in jobs]
    names = sorted(traces)
    workloads = []
    for k in range(count):
        rng = np.random.default_rng(base_seed + k)
        kind, seed = kinds[k % len(kinds)], base_seed + k
        if kind == "decima":
            generator = TraceSequenceGenerator(decima, num_jobs=int(rng.integers(50, 101)))
            workloads.append(Workload(generator(rng), DECIMA_CLUSTER, seed))
        elif kind in ("real", "trace"):
            jobs = pooled if kind == "real" else traces[names[k // len(kinds) % len(names)]]
            mean_work = float(np.mean([job.work_s for job in jobs]))
            generator = TraceSequenceGenerator(jobs, num_jobs=int(rng.integers(20, 61)),
                                               mean_interarrival_s=mean_work / (
                                                   float(rng.uniform(0.5, 0.95)) * 2))
            workloads.append(Workload(generator(rng), REAL_CLUSTER, seed))
        elif kind == "live":
            name = names[k // len(kinds) % len(names)]
            templates = live_templates(name)
            executors = recorded_executors(templates)
            generator = LiveSequenceGenerator(templates, int(rng.integers(15, 41)),
                                              float(rng.uniform(*trace_load)), executors)
            workloads.append(Workload(generator(rng), {**REAL_CLUSTER,
                                                       "num_executors": executors}, seed,
                                      live_contention=float(rng.uniform(*LIVE_CONTENTION))))
        elif kind == "batch":
            env = SparkDagShopEnv(observation_mode="graph", **BATCH_CLUSTER)
            workloads.append(Workload(env.generator(rng), BATCH_CLUSTER, seed, "makespan_s"))
        elif kind == "synthetic":
            generator = TPCHLikeGenerator(num_jobs=int(rng.integers(20, 41)), mode="online",
                                          load=float(rng.uniform(0.5, 0.95)), num_executors=50)
            workloads.append(Workload(generator(rng), {"num_executors": 50}, seed))
    return workloads


@functools.cache
def live_templates(trace: str) -> dict[str, NodeJob]:
    return load_live_templates(TRACES / trace)


def objective(scheduler: Any, workload: Workload) -> float:
    """The workload's objective under ``scheduler``; ``inf`` when it did not finish every job
    (a policy that stalls must never look better than one that finishes)."""
    if workload.live_contention is not None:
        simulator = LiveSimulator(workload.executors, ObservationLimits(),
                                  contention=workload.live_contention)
        run = simulator.run(workload.jobs, scheduler)
        return run.mean_jct_s if len(run.jct_s) == len(workload.jobs) else math.inf
    env = SparkDagShopEnv(observation_mode="graph", **workload.cluster)
    info = run_episode(env, scheduler, seed=workload.seed, options={"instance": workload.jobs})
    return info[workload.objective] if incomplete_reason(info) is None else math.inf


def play(args: tuple[np.ndarray, bool, list[Workload], list[float]]) -> float:
    """Mean over workloads of the candidate's objective relative to fair's (a worker task;
    ``inf`` when the candidate left a workload unfinished: CMA-ES ranks it last)."""
    params, source_rule, workloads, fair = args
    half = len(STAGE_FEATURES)
    policy = ScoringPolicy(params[:half], params[half:], source_rule=source_rule)
    return float(np.mean([objective(policy, w) / f
                          for w, f in zip(workloads, fair, strict=True)]))


def fair_objectives(workloads: list[Workload]) -> list[float]:
    """``fair``'s objective on each workload: the reference every candidate is divided by."""
    values = [objective(make_heuristic("fair"), w) for w in workloads]
    for workload, value in zip(workloads, values, strict=True):
        if not math.isfinite(value):
            raise RuntimeError(f"fair did not finish the workload of seed {workload.seed}: "
                               f"it cannot be the reference")
    return values


def play_candidate(params: np.ndarray, round_: tuple[bool, list[Workload], list[float]]
                   ) -> float:
    """:func:`play` as :class:`agents.algos.cmaes.CmaesProblem` scores a candidate."""
    return play((params, *round_))


@dataclass(frozen=True)
class Settings:
    """The ``cmaes:`` section of the SparkDagShop entry (CMA-ES and its workloads)."""

    generations: int
    population: int  # candidates per generation
    train_workloads: int  # drawn anew every generation
    validation_workloads: int
    validate_every: int
    sigma: float  # initial step size of the score weights
    limit_scale: float  # initial steps of the limit weights relative to sigma
    trace_load_min: float  # offered load of the real-trace sequences, drawn uniformly
    trace_load_max: float
    workers: int
    kinds: tuple[str, ...]
    init: str  # one of INITS
    real_traces: tuple[str, ...] | None  # files in data/spark_traces; None: all with waves
    decima_tpch: str | None  # Decima's TPC-H traces folder (kind decima)


def training_data(settings: Settings) -> tuple[list[Job] | None, dict[str, list[Job]]]:
    """Decima's jobs (if asked for) and the traces to train on; a setting that cannot be met is
    a ValueError naming its key."""
    if settings.init not in INITS:
        raise ValueError(f"cmaes.init: {settings.init!r} is not one of {', '.join(INITS)}")
    if not 0 < settings.trace_load_min <= settings.trace_load_max:
        raise ValueError(f"cmaes.trace_load_min/trace_load_max: need 0 < min <= max, got "
                         f"{settings.trace_load_min}, {settings.trace_load_max}")
    decima = load_decima_tpch(Path(settings.decima_tpch)) if settings.decima_tpch else None
    traces = load_wave_traces(TRACES)
    if settings.real_traces is not None:
        missing = sorted(set(settings.real_traces) - set(traces))
        if missing:
            raise ValueError(f"cmaes.real_traces: {', '.join(missing)} not in {TRACES} "
                             f"(with waves)")
        traces = {name: traces[name] for name in settings.real_traces}
    if problem := kinds_problem(settings.kinds, decima, traces):
        raise ValueError(problem)
    return decima, traces


def cmaes_recipe(run: TrainRun, settings: Settings) -> CmaesProblem:
    """The scoring policy as a CMA-ES problem; ``save`` writes ``policy.json`` in the run's
    folder with the Spark fields added to the record."""
    decima, traces = training_data(settings)
    kinds, trace_load = settings.kinds, (settings.trace_load_min, settings.trace_load_max)
    half = len(STAGE_FEATURES)
    source_rule = settings.init == "fair"
    validation = make_workloads(settings.validation_workloads, VALIDATION_SEED, decima, traces,
                                kinds, trace_load)
    validation_fair = fair_objectives(validation)

    def training_round(generation: int) -> tuple[bool, list[Workload], list[float]]:
        workloads = make_workloads(settings.train_workloads, TRAIN_SEED + generation * 100,
                                   decima, traces, kinds, trace_load)
        return source_rule, workloads, fair_objectives(workloads)

    def save(params: np.ndarray, record: dict[str, Any]) -> Path:
        shapes = {"executors": sorted({w.executors for w in validation}),
                  "jobs": [min(len(w.jobs) for w in validation),
                           max(len(w.jobs) for w in validation)]}
        policy = ScoringPolicy(params[:half], params[half:], shapes=shapes,
                               source_rule=source_rule)
        record = {**record, "init": settings.init, "kinds": list(kinds),
                  "decima_tpch": bool(decima), "real_traces": sorted(traces),
                  "train_seed": TRAIN_SEED, "validation_seed": VALIDATION_SEED,
                  "episodes": record["generations"] * (settings.population + 1)
                  * settings.train_workloads}
        return policy.save(run.run_dir / "policy.json", record)

    return CmaesProblem(
        start=np.concatenate(INITS[settings.init]()),
        stds=np.concatenate([np.ones(half), np.full(half, settings.limit_scale)]),
        score=play_candidate, training_round=training_round,
        validate=lambda params: play((params, source_rule, validation, validation_fair)),
        save=save, name="vs_fair", ylabel="objective / fair's (JCT online, makespan batch)",
        title="Spark DAG-shop scoring policy",
        start_label=f"the start ({settings.init}, {len(validation)} workloads)")


def main(argv: list[str] | None = None) -> None:
    """The old trainer command: names its ``train_agents.py train`` equivalent, exits 2."""
    from agents.algos.record import moved_command

    moved_command("python -m agents.spark_dag.train", "spark_dag", "cmaes",
                  sys.argv[1:] if argv is None else argv, OLD_DEFAULTS)


if __name__ == "__main__":
    main()
