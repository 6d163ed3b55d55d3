"""CMA-ES (the ``cma`` library) over the parameters of a candidate-scoring problem.

Each generation draws the problem's training round (workloads, references) once, samples
``population`` candidates, scores every candidate on that same round in ``workers`` processes
(common random numbers: candidates are compared on identical conditions) and tells CMA-ES the
scores (lower is better). Every ``validate_every`` generations the distribution's mean is
validated; the best validated point (the start included) is the model, so training never
returns something worse on validation than where it started. Ctrl-C stops after the current
generation's scores and keeps that best point.

The problem's part (``agents/<problem>/train.py``: ``Settings`` and ``cmaes_recipe(run,
settings) -> CmaesProblem``) says what a candidate is and how it is scored and saved.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.algos import recipe_module
from agents.algos.record import (
    Panel,
    TrainResult,
    TrainRun,
    base_record,
    draw_curve,
    ignore_sigint,
    interruptible,
    seed_all,
)


@dataclass
class CmaesProblem:
    """A problem for :func:`search`.

    ``score(candidate, round)`` must be a module-level function (it runs in worker
    processes); ``training_round(generation)`` draws what a generation's candidates are all
    scored on; ``validate(params)`` scores a point on held-out data; ``save(params, record)``
    writes the model and returns its path. ``name`` labels the record's keys
    (``validation_<name>``), ``ylabel`` and ``title`` the curve."""

    start: np.ndarray
    stds: np.ndarray
    score: Callable[[np.ndarray, Any], float]
    training_round: Callable[[int], Any]
    validate: Callable[[np.ndarray], float]
    save: Callable[[np.ndarray, dict[str, Any]], Path]
    name: str
    ylabel: str
    title: str
    start_label: str = "the start"


@dataclass
class SearchOutcome:
    best: np.ndarray
    best_score: float
    history: list[dict[str, float]]
    generations: int
    interrupted: bool


def _score(task: tuple[Callable[[np.ndarray, Any], float], np.ndarray, Any]) -> float:
    score, candidate, round_ = task
    return score(candidate, round_)


def search(problem: CmaesProblem, generations: int, population: int, sigma: float,
           validate_every: int, workers: int, seed: int, say: Callable[[str], None] = print
           ) -> SearchOutcome:
    """CMA-ES from ``problem.start`` (step ``sigma`` times ``problem.stds``), seeded by
    ``seed + 1`` (the shipped Spark policies' convention)."""
    import cma  # here, so that --help answers at once

    started, key = time.monotonic(), problem.name
    engine = cma.CMAEvolutionStrategy(problem.start, sigma, {
        "seed": seed + 1, "popsize": population, "verbose": -9, "CMA_stds": problem.stds})
    best, best_score = problem.start, problem.validate(problem.start)
    history = [{"generation": 0, f"validation_{key}": best_score, "minutes": 0.0}]
    say(f"validation: {problem.start_label} scores {best_score:.3f}")
    done = 0
    pool = ProcessPoolExecutor(workers, initializer=ignore_sigint)
    try:  # the workers go with the search, whatever ends it
        with interruptible() as stop:
            for generation in range(1, generations + 1):
                round_ = problem.training_round(generation)
                candidates = engine.ask()
                fitness = np.array(list(pool.map(_score, [(problem.score, c, round_)
                                                          for c in candidates])))
                engine.tell(candidates, fitness.tolist())
                done = generation
                say(f"generation {generation}: train score best {fitness.min():.3f} median "
                    f"{np.median(fitness):.3f}")
                if generation % validate_every == 0 or generation == generations:
                    centre = np.array(engine.mean)
                    score = problem.validate(centre)
                    history.append({"generation": generation, f"validation_{key}": score,
                                    f"train_median_{key}": float(np.median(fitness)),
                                    "minutes": (time.monotonic() - started) / 60})
                    say(f"  validation score {score:.3f}")
                    if score < best_score:
                        best, best_score = centre, score
    finally:
        pool.shutdown(cancel_futures=True)
    return SearchOutcome(best, best_score, history, done, stop.interrupted)


def train_run(run: TrainRun) -> TrainResult:
    """``algo: cmaes``: the problem's recipe, :func:`search`, the model with its record (the
    problem's ``save``) and ``policy.png``."""
    settings = run.config.settings()
    recipe = importlib.import_module(recipe_module(run.config.problem)).cmaes_recipe
    seed_all(run.seed)
    problem: CmaesProblem = recipe(run, settings)
    outcome = search(problem, settings.generations, settings.population, settings.sigma,
                     settings.validate_every, settings.workers, run.seed, run.say)
    record = {**base_record(run, outcome.interrupted), "generations": outcome.generations,
              f"best_validation_{problem.name}": outcome.best_score,
              "history": outcome.history}
    path = problem.save(outcome.best, record)
    draw_curve(outcome.history, "generation", "CMA-ES generation",
               [Panel({f"validation_{problem.name}": "validation (held-out)"}, problem.ylabel,
                      problem.title, reference=1.0)], path.with_suffix(".png"))
    run.say(f"saved {path} (best validation score {outcome.best_score:.3f})")
    return TrainResult(path, outcome.generations, outcome.interrupted)
