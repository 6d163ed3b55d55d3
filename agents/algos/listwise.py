"""A linear ranker trained with a listwise loss on search labels (numpy only).

A group is ``(features, labels)``: one row per choice and the choice's cost ratio from an
exact evaluation (lower is better). The loss per group is the cross-entropy between
``softmax(features @ w)`` and ``softmax(-(labels - min) / temperature)``; training is
full-batch Adam.

``algo: listwise`` (:func:`train_run`) takes the problem's part from ``agents/<problem>/train.py``
(``Settings`` and ``listwise_recipe(run, settings) -> RankerFit``: labels, fits, validation) and
writes the ranker file (weights plus the training record) and its learning curve.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.algos import recipe_module
from agents.algos.record import (
    Panel,
    Stop,
    TrainResult,
    TrainRun,
    base_record,
    draw_curve,
    front_door_command,
    seed_all,
    write_json,
)

Group = tuple[np.ndarray, np.ndarray]


class RankerFileError(ValueError):
    """A ranker file that is missing or does not fit this code (one-line message)."""


def read_ranker(path: str | Path, features: Sequence[str], what: str, env_id: str
                ) -> tuple[dict[str, Any], np.ndarray]:
    """The JSON of a ranker file and its weights, checked against ``features``."""
    path = Path(path)
    if not path.is_file():
        raise RankerFileError(f"{what} not found: {path} (train it with "
                              f"{front_door_command(env_id)})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RankerFileError(f"{path}: not JSON ({error})") from None
    if not isinstance(data, dict) or data.get("features") != list(features):
        raise RankerFileError(f"{path}: field 'features' does not match this code's "
                              f"{list(features)}; retrain it")
    weights = np.asarray(data.get("weights", []), dtype=float)
    if weights.shape != (len(features),):
        raise RankerFileError(f"{path}: field 'weights' needs {len(features)} numbers")
    return data, weights


def listwise_loss(weights: np.ndarray, groups: Sequence[Group],
                  temperature: float) -> tuple[float, np.ndarray]:
    total, gradient = 0.0, np.zeros_like(weights)
    for features, labels in groups:
        scores = features @ weights
        p = np.exp(scores - scores.max())
        p /= p.sum()
        target = np.exp(-(labels - labels.min()) / temperature)
        target /= target.sum()
        total -= float(target @ np.log(p + 1e-12))
        gradient += features.T @ (p - target)
    return total / len(groups), gradient / len(groups)


def fit_listwise(groups: Sequence[Group], num_features: int, steps: int, learning_rate: float,
                 temperature: float, seed: int, eval_every: int,
                 validate: Callable[[np.ndarray], dict[str, float]],
                 initial: np.ndarray | None = None, stop: Stop | None = None
                 ) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Weights after ``steps`` Adam steps from ``initial`` (default: small random weights
    drawn with ``seed``), and the curve: every ``eval_every`` steps the train loss and whatever
    ``validate(weights)`` measures. With ``stop``, Ctrl-C ends the fit early (the weights so
    far) and sets ``stop.interrupted``."""
    weights = (np.random.default_rng(seed).normal(0.0, 0.01, num_features) if initial is None
               else np.array(initial, dtype=float))
    moment, second = np.zeros_like(weights), np.zeros_like(weights)
    curve: list[dict[str, float]] = []
    try:
        for step in range(steps + 1):
            loss, gradient = listwise_loss(weights, groups, temperature)
            if step % eval_every == 0 or step == steps:
                curve.append({"step": step, "train_loss": loss, **validate(weights)})
            if step == steps:
                break
            moment = 0.9 * moment + 0.1 * gradient
            second = 0.999 * second + 0.001 * gradient ** 2
            weights = weights - learning_rate * (moment / (1 - 0.9 ** (step + 1))) / (
                np.sqrt(second / (1 - 0.999 ** (step + 1))) + 1e-8)
    except KeyboardInterrupt:
        if stop is None:
            raise
        stop.interrupted = True
    return weights, curve


@dataclass
class RankerFit:
    """What a problem's ``listwise_recipe`` returns: the weights over ``features``, the
    validation curve (points with ``step``, ``train_loss``, ``validation_mean_ratio`` and
    ``validation_worst_ratio``), the gradient steps taken, the problem's own record fields
    (e.g. ``top_k``) and the curve's labels."""

    features: Sequence[str]
    weights: np.ndarray
    curve: list[dict[str, float]]
    steps: int
    fields: dict[str, Any]
    title: str
    ylabel: str
    interrupted: bool = False


def train_run(run: TrainRun) -> TrainResult:
    """``algo: listwise``: the problem's recipe, then ``model.ranker.json`` (features, weights,
    the problem's fields and the record) and ``model.ranker.png`` in the run's folder."""
    settings = run.config.settings()
    recipe = importlib.import_module(recipe_module(run.config.problem)).listwise_recipe
    seed_all(run.seed)
    fit: RankerFit = recipe(run, settings)
    if not fit.curve:
        raise KeyboardInterrupt  # stopped before the first fitted weights: nothing to keep
    path = run.run_dir / "model.ranker.json"
    png = path.with_suffix(".png")
    write_json(path, {**base_record(run, fit.interrupted), "features": list(fit.features),
                      "weights": fit.weights.tolist(), **fit.fields, "steps": fit.steps,
                      "validation_curve": fit.curve, "learning_curve_png": png.name})
    draw_curve(fit.curve, "step", "gradient step", [
        Panel({"train_loss": "train"}, "listwise loss (train)", "training loss"),
        Panel({"validation_mean_ratio": "mean", "validation_worst_ratio": "worst"},
              fit.ylabel, fit.title, reference=1.0)], png)
    last = fit.curve[-1]
    run.say(f"validation mean {last['validation_mean_ratio']:.4f}, worst "
            f"{last['validation_worst_ratio']:.4f}; wrote {path} and {png.name}")
    return TrainResult(path, fit.steps, fit.interrupted)
