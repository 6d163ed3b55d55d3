"""Train the shipped Spark DAG-shop scheduler: evolution strategies over a scoring policy.

    python -m agents.spark_dag.train [--decima-tpch DIR] [--kinds synthetic,decima,real,batch]
        [--init shortest_work|shortest_work_x2|fair] [--real-traces FILES]
        [--trace-load-min 0.5] [--trace-load-max 0.95] [--generations 30] [--workers 2]
        [--seed 0] [--out models/spark_dag_policy.json]

The policy (:class:`agents.spark_dag.policy.ScoringPolicy`) scores every schedulable stage of the
whole graph and picks a parallelism limit relative to the fair share. It starts either at
``fair`` exactly (:func:`fair_weights`, with the source rule) or, by default, at shortest
remaining work first at the fair share without the source rule
(:func:`shortest_work_weights`), a hand-set point that is already 10-20% below fair on mean
JCT, or (``shortest_work_x2``) the same at twice the fair share, which on 2 executors is
``sjf``; the record says which. The search is CMA-ES (the ``cma`` library): each generation
samples ``population`` weight vectors, plays every candidate on the same training workloads
(drawn anew each generation) with the same duration seeds (common random numbers), and ranks
it by the mean over workloads of its objective relative to ``fair``'s on that workload (mean
JCT online, makespan in batch), so candidates are compared on identical conditions. CMA-ES
adapts its step sizes and their correlations, which a plain OpenAI-ES with one sigma could
not (it left the limit weights nearly where they started; see docs/spark_dag.md). Every
``validate_every`` generations the distribution's mean is played on held-out validation
workloads; the best validated mean is kept (the start included), so the shipped policy is
never worse on validation than where it started. Rollouts run in ``--workers`` processes.

A requested kind whose data is missing (``decima`` without ``--decima-tpch``, a trace kind
without traces) is refused before training starts, never dropped. Workloads, in turn:
synthetic online workloads shaped like Decima's TPC-H jobs
(``TPCHLikeGenerator``, 50 executors, loads 0.5..0.95, 20..40 jobs); with ``--decima-tpch``,
50..100-job sequences of Decima's traces (50 executors); 20..60-job sequences of the
shipped real-Spark traces on 2 executors (the ``local[2]`` shape, no move cost); with
``--kinds live``, 15..40-job streams of a trace played in the live mode
(:class:`envs.spark_dag.LiveSimulator`: whole DAG nodes on ``q`` executors with their measured
times at ``q``, as the real-Spark bridge runs them; loads ``--trace-load-min``..``max``,
contention 0.2..0.6), which is how the real-Spark policies are trained; and batch instances of
the benchmark's batch shape (10 jobs, 20 executors), judged by makespan. The
policy file records the executor counts it was validated on. The record next to the model
holds every argument, seed, the wall time and the validation curve; a PNG learning curve is
written beside it.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
DATA_OF_KIND = {"decima": "--decima-tpch DIR (Decima's TPC-H traces)",
                "real": f"--real-traces FILES (traces with waves in {TRACES})",
                "trace": f"--real-traces FILES (traces with waves in {TRACES})",
                "live": f"--real-traces FILES (traces with waves in {TRACES})"}
REAL_CLUSTER = {"num_executors": 2, "moving_delay_s": 0.0, "warmup_s": 0.0}
# live-mode slowdown per other running node: fitted 0.4 on local[2] (benchmarks.spark_real);
# drawn around it so that the policy does not lean on one machine's figure
LIVE_CONTENTION = (0.2, 0.6)


def kinds_problem(kinds: tuple[str, ...], decima: list[Job] | None,
                  traces: dict[str, list[Job]]) -> str | None:
    """Why ``kinds`` cannot be trained on with this data (an unknown kind, or a kind whose
    data is missing: it names what supplies it), or None."""
    if not kinds:
        return f"--kinds: no kind given (known: {', '.join(KINDS)})"
    if unknown := sorted(set(kinds) - set(KINDS)):
        return f"--kinds: unknown {', '.join(unknown)} (known: {', '.join(KINDS)})"
    present = {"decima": bool(decima), "real": bool(traces), "trace": bool(traces),
               "live": bool(traces)}
    for kind in kinds:
        if not present.get(kind, True):
            return (f"--kinds: kind {kind!r} has no data; give {DATA_OF_KIND[kind]} or drop "
                    f"it from --kinds")
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
            generator = LiveSequenceGenerator(live_templates(name), int(rng.integers(15, 41)),
                                              float(rng.uniform(*trace_load)),
                                              REAL_CLUSTER["num_executors"])
            workloads.append(Workload(generator(rng), REAL_CLUSTER, seed,
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


@dataclass
class Config:
    generations: int = 30
    population: int = 16         # candidates per generation
    train_workloads: int = 8     # drawn anew every generation
    validation_workloads: int = 12
    validate_every: int = 3
    sigma: float = 0.1           # initial step size of the score weights
    limit_scale: float = 0.5     # initial steps of the limit weights relative to sigma
    trace_load_min: float = 0.5  # offered load of the real-trace sequences, drawn uniformly
    trace_load_max: float = 0.95
    workers: int = 2
    seed: int = 0


def plot_curve(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot([h["generation"] for h in history], [h["validation_vs_fair"] for h in history],
              marker="o", label="validation (held-out workloads)")
    axis.axhline(1.0, color="grey", linestyle="--", label="fair")
    axis.set_xlabel("CMA-ES generation")
    axis.set_ylabel("objective / fair's (JCT online, makespan batch)")
    axis.set_title("Spark DAG-shop scoring policy")
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agents.spark_dag.train")
    parser.add_argument("--decima-tpch", type=Path,
                        help="Decima's TPC-H traces, to train on their sequences as well")
    for field, default in asdict(Config()).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--real-traces", help="comma-separated files in data/spark_traces to "
                        "train on (default: every trace there that carries waves)")
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS),
                        help=f"workload kinds to train and validate on (of {', '.join(KINDS)}); "
                             f"decima needs --decima-tpch: without it, name the others")
    parser.add_argument("--init", choices=sorted(INITS), default="shortest_work",
                        help="starting point: fair (with the source rule) or shortest remaining "
                             "work at the fair share or twice it (without it)")
    parser.add_argument("--out", type=Path, default=Path("models/spark_dag_policy.json"))
    args = parser.parse_args(argv)
    config = Config(**{f: getattr(args, f) for f in asdict(Config())})
    kinds = tuple(kind for kind in args.kinds.split(",") if kind)
    decima = load_decima_tpch(args.decima_tpch) if args.decima_tpch else None
    traces = load_wave_traces(TRACES)
    if args.real_traces:
        wanted = args.real_traces.split(",")
        missing = sorted(set(wanted) - set(traces))
        if missing:
            parser.error(f"--real-traces: {', '.join(missing)} not in {TRACES} (with waves)")
        traces = {name: traces[name] for name in wanted}
    if problem := kinds_problem(kinds, decima, traces):
        parser.error(problem)
    import cma  # here, so that --help answers at once

    started = time.monotonic()
    half = len(STAGE_FEATURES)
    start = np.concatenate(INITS[args.init]())
    source_rule = args.init == "fair"
    search = cma.CMAEvolutionStrategy(start, config.sigma, {
        "seed": config.seed + 1, "popsize": config.population, "verbose": -9,
        "CMA_stds": np.concatenate([np.ones(half), np.full(half, config.limit_scale)])})

    trace_load = (config.trace_load_min, config.trace_load_max)
    if not 0 < trace_load[0] <= trace_load[1]:
        parser.error(f"--trace-load-min/--trace-load-max: need 0 < min <= max, got {trace_load}")
    validation = make_workloads(config.validation_workloads, VALIDATION_SEED, decima, traces,
                                kinds, trace_load)
    validation_fair = fair_objectives(validation)
    best_params, best_score = start, play((start, source_rule, validation, validation_fair))
    history = [{"generation": 0, "validation_vs_fair": best_score, "minutes": 0.0}]
    print(f"validation ({len(validation)} workloads): the start ({args.init}) is "
          f"{best_score:.3f} x fair", flush=True)
    with ProcessPoolExecutor(config.workers) as pool:
        for generation in range(1, config.generations + 1):
            workloads = make_workloads(config.train_workloads,
                                       TRAIN_SEED + generation * 100, decima, traces, kinds,
                                       trace_load)
            fair = fair_objectives(workloads)
            candidates = search.ask()
            fitness = np.array(list(pool.map(play, [(c, source_rule, workloads, fair)
                                                    for c in candidates])))
            search.tell(candidates, fitness.tolist())
            print(f"generation {generation}: train objective/fair best {fitness.min():.3f} "
                  f"median {np.median(fitness):.3f}", flush=True)
            if generation % config.validate_every == 0 or generation == config.generations:
                centre = np.array(search.mean)
                score = play((centre, source_rule, validation, validation_fair))
                history.append({"generation": generation, "validation_vs_fair": score,
                                "train_median_vs_fair": float(np.median(fitness)),
                                "minutes": (time.monotonic() - started) / 60})
                print(f"  validation objective/fair {score:.3f}", flush=True)
                if score < best_score:
                    best_params, best_score = centre, score
    shapes = {"executors": sorted({w.executors for w in validation}),
              "jobs": [min(len(w.jobs) for w in validation), max(len(w.jobs) for w in validation)]}
    policy = ScoringPolicy(best_params[:half], best_params[half:], shapes=shapes,
                           source_rule=source_rule)
    record = {"command": "python -m agents.spark_dag.train " + " ".join(
                  str(a) for a in (argv if argv is not None else sys.argv[1:])),
              "config": asdict(config), "init": args.init, "kinds": list(kinds),
              "decima_tpch": bool(decima),
              "real_traces": sorted(traces),
              "train_seed": TRAIN_SEED, "validation_seed": VALIDATION_SEED,
              "episodes": config.generations * (config.population + 1)
              * config.train_workloads,
              "wall_minutes": (time.monotonic() - started) / 60,
              "best_validation_vs_fair": best_score, "history": history}
    policy.save(args.out, record)
    plot_curve(history, args.out.with_suffix(".png"))
    print(f"saved {args.out} (validation mean JCT / fair {best_score:.3f})")


if __name__ == "__main__":
    main()
