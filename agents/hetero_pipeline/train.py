"""Train the pipeline agent's move ranker (:mod:`agents.hetero_pipeline.agent`) by DAgger.

    nice -n 10 python -m agents.hetero_pipeline.train [--train 160] [--validation 48]
        [--dagger 3] [--seed 0]

- Expert: exhaustive search of the move neighbourhood. At a state (a plan), every move is
  simulated; its label is its simulated time over the current plan's.
- Iteration 0 collects the states that the expert's own hill climb from ``cluster_dp``
  visits; each later iteration rolls out the current ranker (``top_k`` simulations per
  round) on the training instances and adds the expert's labels of the states it visits
  (DAgger: the ranker learns on the states it reaches itself). After every iteration the
  linear ranker is refitted on everything collected (:func:`agents.algos.listwise.fit_listwise`).
  Each refit starts from the previous iteration's weights.
- Validation curve: every ``--eval-every`` gradient steps, the agent's mean and worst ratio
  to ``cluster_dp`` on held-out validation instances, played for real (``top_k`` learned
  simulations per round).

Instances: ``HeteroPipelineGenerator`` with 3-8 devices and fastest-to-slowest speed ratios
1, 2, 4, 8 (cycled), seeds ``100000 + i`` (train) and ``200000 + i`` (validation); the
benchmark's seeds are others. Writes the model and a learning-curve PNG next to it.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from agents.algos.listwise import Group, draw_learning_curve, fit_listwise
from agents.hetero_pipeline.agent import FEATURES, HeteroPipelineAgent, SearchCache
from envs.hetero_pipeline.generator import HeteroPipelineGenerator
from envs.hetero_pipeline.instance import PipelineInstance, PipelinePlan
from envs.shipped import ROOT
from heuristics.hetero_pipeline import cluster_dp

RATIOS = (1.0, 2.0, 4.0, 8.0)
TRAIN_SEED_BASE = 100_000
VALIDATION_SEED_BASE = 200_000
TEMPERATURE = 0.02
MAX_ROUNDS = 6


def instance_for(index: int, seed_base: int) -> PipelineInstance:
    ratio = RATIOS[index % len(RATIOS)]
    generator = HeteroPipelineGenerator(num_devices=(3, 8), speed_ratio=(ratio, ratio))
    return generator(np.random.default_rng(seed_base + index))


def expert_labels(cache: SearchCache, plan: PipelinePlan) -> Group | None:
    """Every move of ``plan`` simulated: ``(features, time over the current plan's)``."""
    current_s = cache.time(plan)
    near = cache.neighbourhood(plan, current_s)
    if not near.plans:
        return None
    return near.features, np.array([cache.time(p) for p in near.plans]) / current_s


def visited_states(agent: HeteroPipelineAgent, cache: SearchCache,
                   start: PipelinePlan) -> list[PipelinePlan]:
    """The plans a hill climb passes through (``top_k`` = every move for the expert)."""
    states, plan = [start], start
    for _ in range(agent.max_rounds):
        improved, _, _ = HeteroPipelineAgent(agent.weights, agent.top_k, 1).improve(
            cache.instance, plan, cache)
        if improved == plan:
            break
        plan = improved
        states.append(plan)
    return states


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agents.hetero_pipeline.train")
    parser.add_argument("--train", type=int, default=160)
    parser.add_argument("--validation", type=int, default=48)
    parser.add_argument("--dagger", type=int, default=3, help="DAgger iterations")
    parser.add_argument("--top-k", type=int, default=6)
    parser.add_argument("--steps", type=int, default=300, help="gradient steps per iteration")
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out",
                        default=str(ROOT / "models" / "hetero_pipeline_agent.ranker.json"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    train = [instance_for(i, TRAIN_SEED_BASE) for i in range(args.train)]
    validation = [instance_for(i, VALIDATION_SEED_BASE) for i in range(args.validation)]
    train_caches = [SearchCache(instance) for instance in train]
    validation_caches = [SearchCache(instance) for instance in validation]
    train_starts = [cluster_dp(instance) for instance in train]
    validation_starts = [cluster_dp(instance) for instance in validation]

    def validate_with(top_k: int):
        def validate(weights: np.ndarray) -> dict[str, float]:
            agent = HeteroPipelineAgent(weights, top_k, MAX_ROUNDS)
            ratios = np.array([agent.improve(cache.instance, start, cache)[1] / cache.time(start)
                               for cache, start in zip(validation_caches, validation_starts,
                                                       strict=True)])
            return {"validation_mean_ratio": float(ratios.mean()),
                    "validation_worst_ratio": float(ratios.max())}
        return validate

    exhaustive = HeteroPipelineAgent(np.zeros(len(FEATURES)), 10**9, MAX_ROUNDS)
    policy, groups, curve, seen = exhaustive, [], [], set()
    weights = None
    for iteration in range(args.dagger):
        added = 0
        for cache, start in zip(train_caches, train_starts, strict=True):
            for plan in visited_states(policy, cache, start):
                if (id(cache), plan) in seen:
                    continue
                seen.add((id(cache), plan))
                labelled = expert_labels(cache, plan)
                if labelled is not None:
                    groups.append(labelled)
                    added += 1
        weights, part = fit_listwise(groups, len(FEATURES), args.steps, args.learning_rate,
                                     TEMPERATURE, args.seed, args.eval_every,
                                     validate_with(args.top_k), initial=weights)
        offset = iteration * args.steps
        curve += [{**point, "step": point["step"] + offset, "dagger_iteration": iteration,
                   "states": len(groups)} for point in part if not (iteration and
                                                                   point["step"] == 0)]
        print(f"DAgger {iteration}: +{added} states ({len(groups)} in all), validation mean "
              f"{part[-1]['validation_mean_ratio']:.4f}, worst "
              f"{part[-1]['validation_worst_ratio']:.4f}, {time.perf_counter() - started:.0f} s",
              flush=True)
        policy = HeteroPipelineAgent(weights, args.top_k, MAX_ROUNDS)
    baselines = {
        "exhaustive_neighbourhood": validate_with(10**9)(np.zeros(len(FEATURES))),
        "closed_form_ranked": validate_with(args.top_k)(
            -np.eye(len(FEATURES))[FEATURES.index("bound_over_current")]),
        "random_ranker": validate_with(args.top_k)(
            np.random.default_rng(args.seed).normal(size=len(FEATURES))),
        "learned": validate_with(args.top_k)(weights),
    }
    out = Path(args.out)
    png = out.with_suffix(".png")
    draw_learning_curve(curve, png, f"validation, top_k {args.top_k}, {args.dagger} DAgger "
                        f"iterations of {args.steps} steps", "agent / cluster_dp")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    record = {
        "env_id": "pipesched/HeteroPipeline-v0",
        "features": list(FEATURES), "weights": weights.tolist(), "top_k": args.top_k,
        "max_rounds": MAX_ROUNDS,
        "recipe": "cluster_dp plus learned improvement moves: each round the linear ranker "
                  f"scores every move of the current grouping and the top {args.top_k} are "
                  "simulated; the best is taken if faster. Ranker trained by DAgger "
                  f"({args.dagger} iterations) on the labels of an exhaustive neighbourhood "
                  "search (every move simulated), listwise loss",
        "command": "nice -n 10 python -m agents.hetero_pipeline.train "
                   f"--train {args.train} --validation {args.validation} --dagger {args.dagger} "
                   f"--top-k {args.top_k} --steps {args.steps} --seed {args.seed}",
        "seeds": {"fit": args.seed,
                  "train_instances": f"{TRAIN_SEED_BASE}+i",
                  "validation_instances": f"{VALIDATION_SEED_BASE}+i"},
        "train_instances": args.train, "validation_instances": args.validation,
        "labelled_states": len(groups), "steps": args.steps * args.dagger,
        "wall_s": round(time.perf_counter() - started, 1),
        "validation_curve": curve,
        "validation_baselines": baselines,
        "trained_on": f"{platform.node()} ({platform.processor() or platform.machine()}), "
                      f"shared 2 cores, niced, numpy only; commit {commit}",
        "config": "agents/hetero_pipeline/train.py",
        "learning_curve_png": png.name,
    }
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"validation: {baselines}; wrote {out} and {png.name}")


if __name__ == "__main__":
    main()
