"""The pipeline part of ``algo: listwise``: the move ranker of :mod:`agents.hetero_pipeline.agent`,
trained by DAgger.

    nice -n 10 python train_agents.py train --env pipesched/HeteroPipeline-v0 \
        [--set listwise.train=160] [--set listwise.dagger=3] [--seed 0]

- Expert: exhaustive search of the move neighbourhood. At a state (a plan), every move is
  simulated; its label is its simulated time over the current plan's.
- Iteration 0 collects the states that the expert's own hill climb from ``cluster_dp``
  visits; each later iteration rolls out the current ranker (``top_k`` simulations per
  round) on the training instances and adds the expert's labels of the states it visits
  (DAgger: the ranker learns on the states it reaches itself). After every iteration the
  linear ranker is refitted on everything collected (:func:`agents.algos.listwise.fit_listwise`).
  Each refit starts from the previous iteration's weights.
- Validation curve: every ``listwise.eval_every`` gradient steps, the agent's mean and worst ratio
  to ``cluster_dp`` on held-out validation instances, played for real (``top_k`` learned
  simulations per round).

Instances: ``HeteroPipelineGenerator`` with 3-8 devices and fastest-to-slowest speed ratios
1, 2, 4, 8 (cycled), seeds ``100000 + i`` (train) and ``200000 + i`` (validation); the
benchmark's seeds are others. :mod:`agents.algos.listwise` writes the model and a
learning-curve PNG next to it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from agents.algos.listwise import Group, RankerFit, fit_listwise
from agents.algos.record import Stop, TrainRun, interruptible
from agents.hetero_pipeline.agent import FEATURES, HeteroPipelineAgent, SearchCache
from envs.hetero_pipeline.generator import HeteroPipelineGenerator
from envs.hetero_pipeline.instance import PipelineInstance, PipelinePlan
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


@dataclass(frozen=True)
class Settings:
    """The ``listwise:`` section of the HeteroPipeline entry."""

    train: int  # training instances
    validation: int  # validation instances
    dagger: int  # DAgger iterations
    top_k: int  # moves simulated per round
    steps: int  # gradient steps per iteration
    learning_rate: float
    eval_every: int


def listwise_recipe(run: TrainRun, settings: Settings) -> RankerFit:
    """DAgger: expert labels on the states the current policy visits, a refit per iteration."""
    train = [instance_for(i, TRAIN_SEED_BASE) for i in range(settings.train)]
    validation = [instance_for(i, VALIDATION_SEED_BASE) for i in range(settings.validation)]
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
    weights, stop, iterations = None, Stop(), 0
    with interruptible() as labelling:  # Ctrl-C while labelling keeps the last fit
        for iteration in range(settings.dagger):
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
            weights, part = fit_listwise(groups, len(FEATURES), settings.steps,
                                         settings.learning_rate, TEMPERATURE, run.seed,
                                         settings.eval_every, validate_with(settings.top_k),
                                         initial=weights, stop=stop)
            offset = iteration * settings.steps
            curve += [{**point, "step": point["step"] + offset, "dagger_iteration": iteration,
                       "states": len(groups)} for point in part if not (iteration and
                                                                       point["step"] == 0)]
            iterations += 1
            if stop.interrupted or not part:
                break
            run.say(f"DAgger {iteration}: +{added} states ({len(groups)} in all), validation mean "
                    f"{part[-1]['validation_mean_ratio']:.4f}, worst "
                    f"{part[-1]['validation_worst_ratio']:.4f}, "
                    f"{time.perf_counter() - run.started:.0f} s")
            policy = HeteroPipelineAgent(weights, settings.top_k, MAX_ROUNDS)
    stop.interrupted = stop.interrupted or labelling.interrupted
    fields = {
        "top_k": settings.top_k, "max_rounds": MAX_ROUNDS,
        "recipe": "cluster_dp plus learned improvement moves: each round the linear ranker "
                  f"scores every move of the current grouping and the top {settings.top_k} "
                  "are simulated; the best is taken if faster. Ranker trained by DAgger "
                  f"({iterations} iterations) on the labels of an exhaustive neighbourhood "
                  "search (every move simulated), listwise loss",
        "seeds": {"fit": run.seed, "train_instances": f"{TRAIN_SEED_BASE}+i",
                  "validation_instances": f"{VALIDATION_SEED_BASE}+i"},
        "train_instances": settings.train, "validation_instances": settings.validation,
        "labelled_states": len(groups), "dagger_iterations": iterations,
    }
    if not stop.interrupted:
        fields["validation_baselines"] = {
            "exhaustive_neighbourhood": validate_with(10**9)(np.zeros(len(FEATURES))),
            "closed_form_ranked": validate_with(settings.top_k)(
                -np.eye(len(FEATURES))[FEATURES.index("bound_over_current")]),
            "random_ranker": validate_with(settings.top_k)(
                np.random.default_rng(run.seed).normal(size=len(FEATURES))),
            "learned": validate_with(settings.top_k)(weights),
        }
    return RankerFit(FEATURES, weights, curve, curve[-1]["step"] if curve else 0, fields,
                     f"validation, top_k {settings.top_k}, {iterations} DAgger iterations of "
                     f"{settings.steps} steps", "agent / cluster_dp", stop.interrupted)


def main(argv: list[str] | None = None) -> None:
    """The old trainer command: names its ``train_agents.py train`` equivalent, exits 2."""
    from agents.algos.record import moved_command

    moved_command("python -m agents.hetero_pipeline.train", "hetero_pipeline", "listwise",
                  sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
