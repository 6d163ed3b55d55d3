"""The parameter-server part of ``algo: listwise``: the ranker of :mod:`agents.param_server.agent`.

    nice -n 10 python train_agents.py train --env pipesched/ParamServer-v0 \
        [--set listwise.train=36] [--set listwise.validation=12] [--seed 0]

1. Labels by search: on generated instances (Zipf topics, M = 4, 8, 16, three size regimes,
   30 % or 50 % machine heterogeneity; the site-packages data is never used) every candidate
   of :mod:`agents.param_server.portfolio` is refined, and its label is its iteration time
   over ``two_step``'s (candidate 0 refined). Labels are cached in ``listwise.labels``.
2. Fit: a linear scorer over the candidate features, trained by full-batch gradient descent
   on a listwise loss (cross-entropy between the softmax of the scores and the softmax of
   ``-(label - 1) / temperature`` per instance), seeded weights, ``listwise.steps`` steps.
3. Validation curve: every ``listwise.eval_every`` steps, the agent's mean and worst ratio to
   ``two_step`` on held-out validation instances (``two_step`` plus the ``top_k`` best-scored
   candidates refined). ``top_k`` is the smallest whose final validation mean is within
   0.002 of refining every candidate.

:mod:`agents.algos.listwise` writes the model (weights, ``top_k`` and the training record)
and a learning-curve PNG next to it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.algos.listwise import RankerFit, fit_listwise
from agents.algos.record import Stop, TrainRun
from agents.param_server.portfolio import FEATURES, VARIANTS, candidates, feature_matrix
from envs.param_server.generator import MachineProfile, ZipfTopicGenerator
from envs.param_server.instance import ParamServerInstance

SIZES = ({"num_blocks": 48, "num_shards": 128},
         {"num_blocks": 64, "num_shards": 256},
         {"num_blocks": 96, "num_shards": 1024, "shard_bytes_range": (32, 64),
          "density": 0.04, "samples_range": (40, 300), "nnz_per_sample": 2.5})
MACHINE_COUNTS = (4, 8, 16)
HETEROGENEITY = (0.3, 0.5)
TRAIN_SEED_BASE = 100_000
VALIDATION_SEED_BASE = 200_000
TEMPERATURE = 0.01
MAX_TOP_K = 8


def instance_for(index: int, seed_base: int) -> ParamServerInstance:
    """The ``index``-th instance of a set: sizes and machine counts cycle, seeds differ."""
    rng = np.random.default_rng(seed_base + index)
    size = SIZES[index % len(SIZES)]
    machines = MACHINE_COUNTS[(index // len(SIZES)) % len(MACHINE_COUNTS)]
    profile = MachineProfile(heterogeneity=HETEROGENEITY[int(rng.integers(len(HETEROGENEITY)))])
    return ZipfTopicGenerator(num_machines=machines, machines=profile, **size)(rng)


def label_instance(instance: ParamServerInstance) -> tuple[np.ndarray, np.ndarray]:
    """``(features, ratio to two_step)`` of every candidate (each one refined)."""
    found = candidates(instance)
    finals = np.array([candidate.refined().estimated_iteration_s for candidate in found])
    return feature_matrix(found), finals / finals[0]


def labeller() -> str:
    """What the labels depend on besides the seeds; stored in each cache file."""
    return json.dumps({"features": FEATURES, "variants": [list(vars(v).values())
                                                         for v in VARIANTS],
                       "sizes": SIZES, "machines": MACHINE_COUNTS,
                       "heterogeneity": HETEROGENEITY})


def labelled_set(count: int, seed_base: int, cache: Path, tag: str) -> list[tuple]:
    """Labels of ``count`` instances, read from / added to ``cache`` (an npz per set); a cache
    file written by another labeller (features, variants, instance sizes) is refused."""
    path = cache / f"{tag}-{seed_base}.npz"
    stored: dict[str, np.ndarray] = dict(np.load(path)) if path.exists() else {}
    if stored and str(stored.get("labeller", "")) != labeller():
        raise ValueError(f"{path}: labels made with other features, variants or instance sizes "
                         f"than this version's; delete the file or set another listwise.labels")
    stored["labeller"] = np.array(labeller())
    data = []
    for index in range(count):
        key = str(index)
        if f"x{key}" not in stored:
            started = time.perf_counter()
            instance = instance_for(index, seed_base)
            features, ratios = label_instance(instance)
            stored[f"x{key}"], stored[f"y{key}"] = features, ratios
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(path, **stored)
            print(f"{tag} {index + 1}/{count} {instance.name}: {len(ratios)} candidates, best "
                  f"{ratios.min():.4f}, {time.perf_counter() - started:.1f} s", flush=True)
        data.append((stored[f"x{key}"], stored[f"y{key}"]))
    return data


def agent_ratios(weights: np.ndarray, data: list[tuple], top_k: int) -> np.ndarray:
    """Per instance: the agent's time over ``two_step``'s (candidate 0 plus the top ``k``)."""
    out = []
    for features, ratios in data:
        others = [i for i in np.argsort(-(features @ weights), kind="stable") if i != 0]
        out.append(min(1.0, *ratios[others[:top_k]]) if top_k else 1.0)
    return np.array(out)


@dataclass(frozen=True)
class Settings:
    """The ``listwise:`` section of the ParamServer entry."""

    train: int  # training instances
    validation: int  # validation instances
    steps: int
    learning_rate: float
    eval_every: int
    labels: str  # the label cache folder


def listwise_recipe(run: TrainRun, settings: Settings) -> RankerFit:
    """Labels, a fit with ``top_k`` = 8 to choose ``top_k``, then the fit with that ``top_k``."""
    cache = Path(settings.labels)
    train = labelled_set(settings.train, TRAIN_SEED_BASE, cache, "train")
    validation = labelled_set(settings.validation, VALIDATION_SEED_BASE, cache, "validation")
    labelled_s = time.perf_counter() - run.started
    oracle = np.array([ratios.min() for _, ratios in validation])
    stop = Stop()

    def fit(top_k: int) -> tuple[np.ndarray, list[dict]]:
        def validate(weights: np.ndarray) -> dict[str, float]:
            ratios = agent_ratios(weights, validation, top_k)
            return {"validation_mean_ratio": float(ratios.mean()),
                    "validation_worst_ratio": float(ratios.max())}

        return fit_listwise(train, len(FEATURES), settings.steps, settings.learning_rate,
                            TEMPERATURE, run.seed, settings.eval_every, validate, stop=stop)

    weights, curve = fit(MAX_TOP_K)
    by_k = {k: float(agent_ratios(weights, validation, k).mean()) for k in range(MAX_TOP_K + 1)}
    top_k = min((k for k in by_k if by_k[k] <= oracle.mean() + 0.002), default=MAX_TOP_K)
    if not stop.interrupted:
        weights, curve = fit(top_k)
    by_pre_rank = agent_ratios(-np.eye(len(FEATURES))[FEATURES.index("pre_over_best_pre")],
                               validation, top_k)
    run.say(f"top_k {top_k}: oracle {oracle.mean():.4f}, ranked by pre-refine time "
            f"{by_pre_rank.mean():.4f}")
    fields = {
        "top_k": top_k,
        "recipe": "two_step plus a learned choice of partition variants: candidates are "
                  f"{len(VARIANTS)} METIS variants (seed with edge-weight noise, ufactor, "
                  "speed/bandwidth target shares) with shards placed as two_step does; a "
                  "linear ranker (listwise loss on search labels: every candidate refined) "
                  f"picks the top {top_k} to refine besides two_step's own; the lowest "
                  "simulated time wins",
        "seeds": {"fit": run.seed, "train_instances": f"{TRAIN_SEED_BASE}+i",
                  "validation_instances": f"{VALIDATION_SEED_BASE}+i"},
        "train_instances": settings.train, "validation_instances": settings.validation,
        "learning_rate": settings.learning_rate, "labels_wall_s": round(labelled_s, 1),
        "validation_mean_ratio_by_top_k": by_k,
        "validation_oracle_mean_ratio": float(oracle.mean()),
        "validation_mean_ratio_ranked_by_pre_refine_time": float(by_pre_rank.mean()),
    }
    return RankerFit(FEATURES, weights, curve, curve[-1]["step"] if curve else 0, fields,
                     f"validation, top_k = {top_k}", "agent / two_step (validation)",
                     stop.interrupted)


def main(argv: list[str] | None = None) -> None:
    """The old trainer command: names its ``train_agents.py train`` equivalent, exits 2."""
    from agents.algos.record import moved_command

    moved_command("python -m agents.param_server.train", "param_server", "listwise",
                  sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
