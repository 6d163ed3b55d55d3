"""A learned Spark DAG-shop scheduler on the whole job graph: a scoring policy.

At each decision the policy computes, for every schedulable stage (any job, any number of
stages; nothing is padded), a feature vector ``x`` (:data:`STAGE_FEATURES`, each normalised so
one set of weights serves any E and any number of jobs), scores it ``w . x``, and tries the
stages from the best score down. The parallelism limit of the chosen stage's job is
``fair_share * exp(u . x)`` rounded to the nearest integer and clipped to 1..E, so the policy
chooses how many executors a job may hold as Decima does (any integer), relative to
decima-sim's fair share (rounding, not ceiling: with a share of 1 a tiny positive ``u . x``
would otherwise double the limit). A stage whose
limit is not above what its job holds is skipped; if none is left the policy waits. With
``source_rule`` a job that has free executors of its own may take them all back (decima-sim's
rule for fair and FIFO) whatever its limit. With :func:`fair_weights` (and the source rule) the
policy is exactly the ``fair`` heuristic's order and limits; :func:`shortest_work_weights`
(no source rule) orders jobs by remaining work at the fair share, the starting point of
training (``agents.spark_dag.train``).

Shapes: a policy file records the cluster shapes (executors, jobs per sequence) it was
validated on; :func:`load_policy` refuses others unless ``allow_any_shape``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from envs import PROBLEMS
from envs.json_source import load_json
from envs.shipped import MODELS_DIR
from envs.spark_dag.observation import Decision
from envs.spark_dag.state import ClusterState
from heuristics.spark_dag import GraphView

POLICY_FORMAT = "pipesched.spark_scoring_policy/2"
#: the shipped policies by the shape each was trained and validated for (agents.spark_dag.train):
#: the simulator's online shapes, real Spark on 2 executors in one JVM (``local[2]``, the live
#: bridge's agent there), on a 2-worker standalone cluster and on the multi-slot bed (4
#: executors sharing shaped links), batch
SHIPPED = {"online": MODELS_DIR / PROBLEMS["spark_dag"].agent,
           "real": MODELS_DIR / "spark_dag_policy_real.json",
           "real_cluster": MODELS_DIR / "spark_dag_policy_real_cluster.json",
           "real_bed": MODELS_DIR / "spark_dag_policy_real_bed.json",
           "batch": MODELS_DIR / "spark_dag_policy_batch.json"}
STAGE_FEATURES = (
    "bias",                    # 1
    "source_job",              # the job has free executors of its own
    "arrival_rank",            # 0 for the earliest job in the system .. 1 for the latest
    "log_job_work",            # log1p(remaining expected executor-seconds / 100)
    "log_job_path",            # log1p(remaining critical-path time / 10)
    "log_stage_work",          # log1p(stage remaining work / 100)
    "held_over_share",         # executors the job holds / fair share
    "parents_finished",        # runnable now (else its executors would wait)
    "log_unlaunched",          # log1p(tasks not launched)
    "log_task_s",              # log1p(expected task duration)
    "log_age",                 # log1p((now - arrival) / 100)
    "jobs_share",              # J / (J + E): jobs in the system against executors, 0..1
    "work_rank",               # 0 for the job with the least remaining work .. 1 the most
)


def stage_features(view: GraphView) -> np.ndarray:
    """``(len(view.rows), len(STAGE_FEATURES))`` features of the schedulable stages."""
    state, rows = view.state, view.rows
    jobs = state.stage_job[rows]
    num_jobs = max(state.num_jobs, 1)
    share = view.fair_share
    features = np.empty((rows.size, len(STAGE_FEATURES)))
    features[:, 0] = 1.0
    features[:, 1] = state.job_free_executors[jobs] > 0
    features[:, 2] = jobs / max(num_jobs - 1, 1)
    features[:, 3] = np.log1p(view.job_work[jobs] / 100.0)
    features[:, 4] = np.log1p(view.job_path_s[jobs] / 10.0)
    features[:, 5] = np.log1p(view.stage_work[rows] / 100.0)
    features[:, 6] = view.held[jobs] / share
    features[:, 7] = state.stage_parents_done[rows]
    features[:, 8] = np.log1p(state.stage_unlaunched[rows])
    task_s = state.stage_task_s[rows] if state.stage_task_s is not None else (
        view.stage_work[rows] / np.maximum(state.stage_num_tasks[rows], 1))
    features[:, 9] = np.log1p(task_s)
    features[:, 10] = np.log1p(np.maximum(state.time_s - state.job_arrival_s[jobs], 0) / 100)
    features[:, 11] = num_jobs / (num_jobs + state.total_executors)
    job_rank = np.empty(state.num_jobs)
    job_rank[np.argsort(view.job_work, kind="stable")] = np.arange(state.num_jobs)
    features[:, 12] = job_rank[jobs] / max(num_jobs - 1, 1)
    return features


def fair_weights() -> tuple[np.ndarray, np.ndarray]:
    """Weights that reproduce ``fair``'s choices: source jobs first, then arrival order."""
    score = np.zeros(len(STAGE_FEATURES))
    score[STAGE_FEATURES.index("source_job")] = 3.0  # above every arrival-rank difference
    score[STAGE_FEATURES.index("arrival_rank")] = -1.0
    score[STAGE_FEATURES.index("parents_finished")] = 1e-4
    return score, np.zeros(len(STAGE_FEATURES))


def shortest_work_weights(share_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Weights (used without the source rule) that order jobs by least remaining work, runnable
    stages first, each limited to ``share_factor`` x the fair share (2 on two executors: ``sjf``
    exactly, as long as two or more jobs wait)."""
    score = np.zeros(len(STAGE_FEATURES))
    score[STAGE_FEATURES.index("log_job_work")] = -1.0
    score[STAGE_FEATURES.index("parents_finished")] = 1e-4
    limit = np.zeros(len(STAGE_FEATURES))
    limit[STAGE_FEATURES.index("bias")] = np.log(share_factor)
    return score, limit


class ScoringPolicy:
    """A graph Scheduler: ``act(state, schedulable) -> Decision | None`` (see the module)."""

    name = "scoring_policy"
    observation_mode = "graph"

    def __init__(self, score_weights: np.ndarray, limit_weights: np.ndarray,
                 shapes: dict[str, Any] | None = None, source_rule: bool = True) -> None:
        self.score_weights = np.asarray(score_weights, dtype=np.float64)
        self.limit_weights = np.asarray(limit_weights, dtype=np.float64)
        expected = (len(STAGE_FEATURES),)
        if self.score_weights.shape != expected or self.limit_weights.shape != expected:
            raise ValueError(f"ScoringPolicy: weights must have shape {expected}, got "
                             f"{self.score_weights.shape} and {self.limit_weights.shape}")
        self.shapes = shapes or {}
        self.source_rule = source_rule

    def reset(self) -> None:
        pass

    def act(self, state: ClusterState, schedulable: np.ndarray) -> Decision | None:
        view = GraphView(state, schedulable)
        if view.free <= 0 or view.rows.size == 0:
            return None
        features = stage_features(view)
        scores = features @ self.score_weights
        exponents = np.clip(features @ self.limit_weights, -5.0, 5.0)
        share = view.fair_share
        jobs = state.stage_job[view.rows]
        for index in np.argsort(-scores, kind="stable").tolist():
            job = int(jobs[index])
            if self.source_rule and features[index, 1]:  # take its own executors back
                limit = int(view.held[job] + state.job_free_executors[job])
            else:
                limit = math.floor(share * math.exp(exponents[index]) + 0.5)
            decision = view.decide(int(view.rows[index]), limit)
            if decision is not None:
                return decision
        return None

    def to_json(self) -> dict[str, Any]:
        return {"format": POLICY_FORMAT, "features": list(STAGE_FEATURES),
                "score_weights": self.score_weights.tolist(),
                "limit_weights": self.limit_weights.tolist(), "source_rule": self.source_rule,
                "shapes": self.shapes}

    def save(self, path: str | Path, record: dict[str, Any] | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**self.to_json(), "training": record or {}}, indent=1))
        return path


def validated_executors(path: str | Path) -> list[int]:
    """The executor counts the policy file at ``path`` was validated for ([] for a missing or
    unreadable file: :func:`load_policy` says which and why when it is loaded)."""
    try:
        return list(json.loads(Path(path).read_text()).get("shapes", {}).get("executors", []))
    except (OSError, ValueError):
        return []


class ShapeError(ValueError):
    """A policy used at a cluster shape it was not validated for."""


def load_policy(path: str | Path, executors: int | None = None,
                allow_any_shape: bool = False) -> ScoringPolicy:
    """Load a saved :class:`ScoringPolicy`; with ``executors`` given, refuse a cluster size
    outside the validated ones unless ``allow_any_shape``."""
    path = Path(path)
    data, _ = load_json(path, ValueError)
    if not isinstance(data, dict) or data.get("format") != POLICY_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: not a scoring policy (format {found!r})")
    if data.get("features") != list(STAGE_FEATURES):
        raise ValueError(f"{path}: features {data.get('features')} differ from this version's "
                         f"{list(STAGE_FEATURES)}")
    missing = [key for key in ("score_weights", "limit_weights", "source_rule") if key not in data]
    if missing:
        raise ValueError(f"{path}: missing field {missing[0]!r}")
    policy = ScoringPolicy(np.array(data["score_weights"]), np.array(data["limit_weights"]),
                           data.get("shapes", {}), bool(data["source_rule"]))
    validated = policy.shapes.get("executors", [])
    if executors is not None and not allow_any_shape and executors not in validated:
        raise ShapeError(f"{path}: validated for executors {validated}, not {executors}; use "
                         f"allow_any_shape (--allow-any-shape) to run it anyway")
    return policy
