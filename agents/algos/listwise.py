"""A linear ranker trained with a listwise loss on search labels (numpy only).

A group is ``(features, labels)``: one row per choice and the choice's cost ratio from an
exact evaluation (lower is better). The loss per group is the cross-entropy between
``softmax(features @ w)`` and ``softmax(-(labels - min) / temperature)``; training is
full-batch Adam. Used by the parameter-server and pipeline agents' trainers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Group = tuple[np.ndarray, np.ndarray]


class RankerFileError(ValueError):
    """A ranker file that is missing or does not fit this code (one-line message)."""


def read_ranker(path: str | Path, features: Sequence[str], what: str, trainer: str
                ) -> tuple[dict[str, Any], np.ndarray]:
    """The JSON of a ranker file and its weights, checked against ``features``."""
    path = Path(path)
    if not path.is_file():
        raise RankerFileError(f"{what} not found: {path} (train it with python -m {trainer})")
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
                 initial: np.ndarray | None = None) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Weights after ``steps`` Adam steps from ``initial`` (default: small random weights
    drawn with ``seed``), and the curve: every ``eval_every`` steps the train loss and whatever
    ``validate(weights)`` measures."""
    weights = (np.random.default_rng(seed).normal(0.0, 0.01, num_features) if initial is None
               else np.array(initial, dtype=float))
    moment, second = np.zeros_like(weights), np.zeros_like(weights)
    curve = []
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
    return weights, curve


def draw_learning_curve(curve: list[dict[str, float]], path, title: str, ylabel: str) -> None:
    """Train loss (left) and validation mean/worst ratio (right) against gradient steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [c["step"] for c in curve]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(steps, [c["train_loss"] for c in curve])
    left.set(xlabel="gradient step", ylabel="listwise loss (train)", title="training loss")
    right.plot(steps, [c["validation_mean_ratio"] for c in curve], label="mean")
    right.plot(steps, [c["validation_worst_ratio"] for c in curve], label="worst")
    right.axhline(1.0, color="grey", linewidth=0.8)
    right.set(xlabel="gradient step", ylabel=ylabel, title=title)
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
