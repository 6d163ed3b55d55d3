"""Train the shipped Spark DAG-shop scheduler: evolution strategies over a scoring policy.

    python -m agents.train_spark_dag [--decima-tpch DIR] [--generations 40] [--workers 2]
        [--seed 0] [--out models/spark_dag_policy.json]

The policy (:class:`agents.spark_policy.ScoringPolicy`) scores every schedulable stage of the
whole graph and picks a parallelism limit relative to the fair share; it starts exactly at
``fair`` (:func:`fair_weights`). Each generation draws ``population`` antithetic Gaussian
perturbations of its weights (OpenAI-ES), plays every candidate on the same training
workloads with the same duration seeds (common random numbers), and scores it by the mean
over workloads of ``mean JCT / fair's mean JCT`` on that workload, so a candidate is judged
against its teacher on identical conditions. The gradient estimate uses centred ranks and Adam.
Every ``validate_every`` generations the centre is played on held-out validation workloads;
the best validated centre is kept, so the shipped policy is never worse on validation than
``fair`` itself (the first point). Rollouts run in ``--workers`` processes.

Workloads, in turn: synthetic online workloads shaped like Decima's TPC-H jobs
(``TPCHLikeGenerator``, 50 executors, loads 0.5..0.95, 20..40 jobs); with ``--decima-tpch``,
50..100-job sequences of Decima's traces (50 executors); and 20..60-job sequences of the
shipped real-Spark traces on 2 executors (the ``local[2]`` shape, no move cost). The policy
file records the executor counts it was validated on. The record next to the model
holds every argument, seed, the wall time and the validation curve; a PNG learning curve is
written beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluate import run_episode
from agents.spark_policy import STAGE_FEATURES, ScoringPolicy, fair_weights
from envs.spark_dag import (
    Job,
    SparkDagShopEnv,
    TPCHLikeGenerator,
    TraceSequenceGenerator,
    load_decima_tpch,
    load_wave_traces,
)
from heuristics.spark_dag import make_heuristic

TRAIN_SEED, VALIDATION_SEED = 0, 10_000  # the benchmarks use 20_000+
TRACES = Path(__file__).resolve().parent.parent / "data" / "spark_traces"


@dataclass(frozen=True)
class Workload:
    """One training or validation episode: jobs, cluster and the duration seed."""

    jobs: list[Job]
    executors: int
    seed: int
    moving_delay_s: float = 2.0
    warmup_s: float = 1.0


def make_workloads(count: int, base_seed: int, decima: list[Job] | None,
                   real: list[Job]) -> list[Workload]:
    """Cycles through the shapes: synthetic (E = 50), Decima sequences (E = 50, if given),
    real-Spark trace sequences (E = 2, no move cost: executors are slots of one JVM)."""
    kinds = ["synthetic", *(["decima"] if decima else []), *(["real"] if real else [])]
    workloads = []
    for k in range(count):
        rng = np.random.default_rng(base_seed + k)
        kind = kinds[k % len(kinds)]
        if kind == "decima":
            generator = TraceSequenceGenerator(decima, num_jobs=int(rng.integers(50, 101)))
            workloads.append(Workload(generator(rng), 50, base_seed + k))
        elif kind == "real":
            mean_work = float(np.mean([job.work_s for job in real]))
            generator = TraceSequenceGenerator(real, num_jobs=int(rng.integers(20, 61)),
                                               mean_interarrival_s=mean_work / (
                                                   float(rng.uniform(0.5, 0.95)) * 2))
            workloads.append(Workload(generator(rng), 2, base_seed + k, 0.0, 0.0))
        else:
            generator = TPCHLikeGenerator(num_jobs=int(rng.integers(20, 41)), mode="online",
                                          load=float(rng.uniform(0.5, 0.95)), num_executors=50)
            workloads.append(Workload(generator(rng), 50, base_seed + k))
    return workloads


def mean_jct(scheduler: Any, workload: Workload) -> float:
    env = SparkDagShopEnv(observation_mode="graph", num_executors=workload.executors,
                          moving_delay_s=workload.moving_delay_s, warmup_s=workload.warmup_s)
    return run_episode(env, scheduler, seed=workload.seed,
                       options={"instance": workload.jobs})["mean_jct_s"]


def play(args: tuple[np.ndarray, list[Workload], list[float]]) -> float:
    """Mean over workloads of the candidate's JCT relative to fair's (a worker task)."""
    params, workloads, fair = args
    half = len(STAGE_FEATURES)
    policy = ScoringPolicy(params[:half], params[half:])
    return float(np.mean([mean_jct(policy, w) / f for w, f in zip(workloads, fair, strict=True)]))


def fair_jcts(workloads: list[Workload]) -> list[float]:
    return [mean_jct(make_heuristic("fair"), w) for w in workloads]


def centred_ranks(values: np.ndarray) -> np.ndarray:
    ranks = np.empty(values.size)
    ranks[np.argsort(values)] = np.arange(values.size)
    return ranks / (values.size - 1) - 0.5


@dataclass
class Config:
    generations: int = 40
    population: int = 8          # antithetic pairs per generation
    train_workloads: int = 6     # drawn anew every generation
    validation_workloads: int = 8
    validate_every: int = 4
    sigma: float = 0.3
    learning_rate: float = 0.1
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
    axis.set_xlabel("ES generation")
    axis.set_ylabel("mean JCT / fair's")
    axis.set_title("Spark DAG-shop scoring policy")
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agents.train_spark_dag")
    parser.add_argument("--decima-tpch", type=Path,
                        help="Decima's TPC-H traces, to train on their sequences as well")
    for field, default in asdict(Config()).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--real-traces", help="comma-separated files in data/spark_traces to "
                        "train on (default: every trace there that carries waves)")
    parser.add_argument("--out", type=Path, default=Path("models/spark_dag_policy.json"))
    args = parser.parse_args(argv)
    config = Config(**{f: getattr(args, f) for f in asdict(Config())})
    decima = load_decima_tpch(args.decima_tpch) if args.decima_tpch else None
    traces = load_wave_traces(TRACES)
    if args.real_traces:
        wanted = args.real_traces.split(",")
        missing = sorted(set(wanted) - set(traces))
        if missing:
            parser.error(f"--real-traces: {', '.join(missing)} not in {TRACES} (with waves)")
        traces = {name: traces[name] for name in wanted}
    real = [job for jobs in traces.values() for job in jobs]
    started = time.monotonic()
    rng = np.random.default_rng(config.seed)
    half = len(STAGE_FEATURES)
    params = np.concatenate(fair_weights())
    scale = np.concatenate([np.full(half, 1.0), np.full(half, 0.1)])  # limits are touchy
    moment, velocity = np.zeros_like(params), np.zeros_like(params)

    validation = make_workloads(config.validation_workloads, VALIDATION_SEED, decima, real)
    validation_fair = fair_jcts(validation)
    history = [{"generation": 0, "validation_vs_fair": 1.0, "minutes": 0.0}]
    best_params, best_score = params.copy(), 1.0
    print(f"validation: fair mean JCT {np.mean(validation_fair):.1f} s on "
          f"{len(validation)} workloads", flush=True)
    with ProcessPoolExecutor(config.workers) as pool:
        for generation in range(1, config.generations + 1):
            workloads = make_workloads(config.train_workloads,
                                       TRAIN_SEED + generation * 100, decima, real)
            fair = fair_jcts(workloads)
            noise = rng.standard_normal((config.population, params.size))
            candidates = [params + sign * config.sigma * scale * n
                          for n in noise for sign in (1.0, -1.0)]
            fitness = np.array(list(pool.map(play, [(c, workloads, fair)
                                                    for c in candidates])))
            ranks = centred_ranks(-fitness)  # lower JCT ratio = better = higher rank
            gradient = (ranks[0::2] - ranks[1::2]) @ noise * scale / (2 * config.population)
            moment = 0.9 * moment + 0.1 * gradient
            velocity = 0.999 * velocity + 0.001 * gradient ** 2
            step = moment / (1 - 0.9 ** generation) / (
                np.sqrt(velocity / (1 - 0.999 ** generation)) + 1e-8)
            params = params + config.learning_rate * scale * step
            print(f"generation {generation}: train JCT/fair best {fitness.min():.3f} "
                  f"mean {fitness.mean():.3f}", flush=True)
            if generation % config.validate_every == 0 or generation == config.generations:
                score = play((params, validation, validation_fair))
                history.append({"generation": generation, "validation_vs_fair": score,
                                "train_mean_vs_fair": float(fitness.mean()),
                                "minutes": (time.monotonic() - started) / 60})
                print(f"  validation JCT/fair {score:.3f}", flush=True)
                if score < best_score:
                    best_params, best_score = params.copy(), score
    shapes = {"executors": sorted({w.executors for w in validation}),
              "jobs": [min(len(w.jobs) for w in validation), max(len(w.jobs) for w in validation)]}
    policy = ScoringPolicy(best_params[:half], best_params[half:], shapes=shapes)
    record = {"command": "python -m agents.train_spark_dag " + " ".join(
                  str(a) for a in (argv if argv is not None else sys.argv[1:])),
              "config": asdict(config), "decima_tpch": bool(decima),
              "real_traces": sorted(traces),
              "train_seed": TRAIN_SEED, "validation_seed": VALIDATION_SEED,
              "episodes": config.generations * (2 * config.population + 1)
              * config.train_workloads,
              "wall_minutes": (time.monotonic() - started) / 60,
              "best_validation_vs_fair": best_score, "history": history}
    policy.save(args.out, record)
    plot_curve(history, args.out.with_suffix(".png"))
    print(f"saved {args.out} (validation mean JCT / fair {best_score:.3f})")


if __name__ == "__main__":
    main()
