"""Spark DAG-shop workloads: jobs made of stages, stages made of tasks, and the cluster.

A :class:`Job` is a DAG of :class:`Stage` objects. A stage has ``num_tasks`` tasks; task ``k``
works in three phases, in this order, all while holding one executor slot:

1. ``network_s[k]``: shuffle read, in seconds *at full per-task bandwidth*; concurrent network
   phases share the cluster's network capacity (see :class:`ClusterSpec`);
2. ``compute_s[k]``: CPU seconds on the slot;
3. ``write_s[k]``: output write to local disk, seconds on the slot (optional, default 0).

Per-task arrays are numpy ``float64`` of length ``num_tasks``; a scalar is broadcast (a perfectly
parallel stage has identical tasks). ``network_bytes`` is optional metadata (bytes read per task).

Workload JSON (``save_workload`` / ``load_workload``, ``jobs_to_json`` / ``jobs_from_json``)::

    {"format": "pipesched.spark_workload/1",
     "jobs": [{"name": "tpch/q3", "arrival_s": 0.0,
               "stages": [{"id": 0, "parents": [], "num_tasks": 4,
                           "network_s": 0.0, "compute_s": [1.5, 1.2, 1.4, 1.6],
                           "write_s": 0.1},
                          {"id": 1, "parents": [0], "num_tasks": 2,
                           "network_s": [2.0, 2.0], "compute_s": 0.5,
                           "network_bytes": [2.5e8, 2.5e8]}]}]}

Each per-task field is a number (all tasks equal) or a list of ``num_tasks`` numbers.

Optional ``"waves"`` (measured traces, as in Decima's): task durations by the number of
executors the job held when the trace was recorded, and by wave::

    "waves": {"2": {"first_wave": [0.9, 1.1], "rest_wave": [0.7], "fresh": [1.6],
                    "network_fraction": 0.2},
              "10": {...}}

``fresh``: an executor's first task in the job (includes its warm-up); ``first_wave``: its
first task in this stage after tasks of other stages of the job; ``rest_wave``: later tasks
of the stage; ``network_fraction``: share of each task spent in the network phase (measured
shuffle fetch wait over task time). Under ``ClusterSpec(duration_model="waves")`` the
simulator draws each task's duration from these lists at run time (see
:mod:`envs.spark_dag.simulator`); the per-task fields are the fixed model.

The public Decima TPC-H trace format is read by :func:`load_decima_tpch`.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from envs.json_source import load_json

WORKLOAD_FORMAT = "pipesched.spark_workload/1"
_TASK_FIELDS = ("network_s", "compute_s", "write_s")


class WorkloadError(ValueError):
    """A workload is malformed; the message names the file, job, stage and field."""


def _task_array(value: Any, num_tasks: int, where: str, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise WorkloadError(f"{where}: field {name!r} is not numeric ({error})") from None
    if array.ndim == 0:
        array = np.full(num_tasks, float(array))
    if array.ndim != 1 or array.shape[0] != num_tasks:
        raise WorkloadError(f"{where}: field {name!r} has {array.size} value(s), expected 1 or "
                            f"num_tasks={num_tasks}")
    if not np.all(np.isfinite(array)):
        raise WorkloadError(f"{where}: field {name!r} has a non-finite value")
    if np.any(array < 0):
        bad = int(np.argmax(array < 0))
        raise WorkloadError(f"{where}: field {name!r} is negative for task {bad} "
                            f"({array[bad]!r})")
    array.flags.writeable = False
    return array


_WAVE_KINDS = ("first_wave", "rest_wave", "fresh")


@dataclass(frozen=True)
class Waves:
    """Measured task durations (seconds) at one executor count, by wave; see the module
    docstring. Empty lists are allowed (the simulator falls back as Decima does)."""

    first_wave: tuple[float, ...] = ()
    rest_wave: tuple[float, ...] = ()
    fresh: tuple[float, ...] = ()
    network_fraction: float = 0.0

    @classmethod
    def from_json(cls, data: Any, where: str) -> Waves:
        if not isinstance(data, dict):
            raise WorkloadError(f"{where}: each waves entry must be an object")
        unknown = set(data) - {*_WAVE_KINDS, "network_fraction"}
        if unknown:
            raise WorkloadError(f"{where}: unknown field(s) {sorted(unknown)}")
        lists = {}
        for kind in _WAVE_KINDS:
            values = data.get(kind, [])
            try:
                lists[kind] = tuple(float(v) for v in values)
            except (TypeError, ValueError):
                raise WorkloadError(f"{where}: field {kind!r} is not a list of numbers") from None
            if any(not math.isfinite(v) or v <= 0 for v in lists[kind]):
                raise WorkloadError(f"{where}: field {kind!r} has a value that is not > 0")
        if not any(lists.values()):
            raise WorkloadError(f"{where}: no task durations in any wave")
        fraction = data.get("network_fraction", 0.0)
        if not isinstance(fraction, int | float) or not 0.0 <= fraction < 1.0:
            raise WorkloadError(f"{where}: field 'network_fraction' must be in [0, 1), "
                                f"got {fraction!r}")
        return cls(**lists, network_fraction=float(fraction))

    def to_json(self) -> dict[str, Any]:
        return {"first_wave": list(self.first_wave), "rest_wave": list(self.rest_wave),
                "fresh": list(self.fresh), "network_fraction": self.network_fraction}


@dataclass(eq=False)
class Stage:
    """One stage: ``num_tasks`` tasks with per-task phase durations (see the module docstring)."""

    id: int
    parents: tuple[int, ...]
    num_tasks: int
    network_s: np.ndarray | float | Sequence[float] = 0.0
    compute_s: np.ndarray | float | Sequence[float] = 0.0
    write_s: np.ndarray | float | Sequence[float] = 0.0
    network_bytes: np.ndarray | float | Sequence[float] | None = None
    name: str = ""
    job_name: str = field(default="?", repr=False)
    waves: dict[int, Waves] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        where = f"job {self.job_name!r} stage {self.id!r}"
        if isinstance(self.id, bool) or not isinstance(self.id, int | np.integer):
            raise WorkloadError(f"{where}: field 'id' must be an integer")
        self.id = int(self.id)
        if (isinstance(self.num_tasks, bool) or not isinstance(self.num_tasks, int | np.integer)
                or self.num_tasks < 1):
            raise WorkloadError(f"{where}: field 'num_tasks' must be an integer >= 1, "
                                f"got {self.num_tasks!r}")
        self.num_tasks = int(self.num_tasks)
        try:
            self.parents = tuple(int(p) for p in self.parents)
        except (TypeError, ValueError):
            raise WorkloadError(f"{where}: field 'parents' must be a list of stage ids") from None
        for name in _TASK_FIELDS:
            setattr(self, name, _task_array(getattr(self, name), self.num_tasks, where, name))
        if self.network_bytes is not None:
            self.network_bytes = _task_array(self.network_bytes, self.num_tasks, where,
                                             "network_bytes")
        if self.waves is not None:
            self.waves = _checked_waves(self.waves, where)
        duration = self.network_s + self.compute_s + self.write_s
        if np.any(duration <= 0):
            bad = int(np.argmax(duration <= 0))
            raise WorkloadError(f"{where}: task {bad} has zero total duration "
                                f"(network_s + compute_s + write_s must be > 0)")

    @property
    def task_duration_s(self) -> np.ndarray:
        """Per-task duration at full bandwidth, without delays."""
        return self.network_s + self.compute_s + self.write_s

    @property
    def local_s(self) -> np.ndarray:
        """Per-task slot time after the network phase (compute + write)."""
        return self.compute_s + self.write_s

    @property
    def work_s(self) -> float:
        """Executor-seconds of the whole stage at full bandwidth."""
        return float(self.task_duration_s.sum())

    def to_json(self) -> dict[str, Any]:
        def compact(array: np.ndarray) -> float | list[float]:
            return float(array[0]) if np.all(array == array[0]) else [float(x) for x in array]

        data: dict[str, Any] = {"id": self.id, "parents": list(self.parents),
                                "num_tasks": self.num_tasks}
        if self.name:
            data["name"] = self.name
        for name in _TASK_FIELDS:
            data[name] = compact(getattr(self, name))
        if self.network_bytes is not None:
            data["network_bytes"] = compact(self.network_bytes)
        if self.waves is not None:
            data["waves"] = {str(k): w.to_json() for k, w in sorted(self.waves.items())}
        return data

    @classmethod
    def from_json(cls, data: Any, job_name: str = "?") -> Stage:
        if not isinstance(data, dict):
            raise WorkloadError(f"job {job_name!r}: each stage must be an object, got {data!r}")
        known = {"id", "parents", "num_tasks", "name", "network_bytes", "waves", *_TASK_FIELDS}
        unknown = set(data) - known
        stage_id = data.get("id", "?")
        if unknown:
            raise WorkloadError(f"job {job_name!r} stage {stage_id!r}: unknown field(s) "
                                f"{sorted(unknown)}")
        for required in ("id", "num_tasks"):
            if required not in data:
                raise WorkloadError(f"job {job_name!r} stage {stage_id!r}: missing field "
                                    f"{required!r}")
        return cls(id=data["id"], parents=tuple(data.get("parents", ())),
                   num_tasks=data["num_tasks"], network_s=data.get("network_s", 0.0),
                   compute_s=data.get("compute_s", 0.0), write_s=data.get("write_s", 0.0),
                   network_bytes=data.get("network_bytes"), name=str(data.get("name", "")),
                   job_name=job_name, waves=_waves_from_json(data.get("waves"),
                                                             f"job {job_name!r} stage {stage_id!r}"))


def _checked_waves(waves: Any, where: str) -> dict[int, Waves]:
    if not isinstance(waves, dict) or not waves:
        raise WorkloadError(f"{where}: field 'waves' must be a non-empty mapping "
                            f"executor count -> Waves")
    checked = {}
    for count, entry in waves.items():
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
            raise WorkloadError(f"{where}: waves key {count!r} is not an executor count >= 1")
        if not isinstance(entry, Waves):
            raise WorkloadError(f"{where}: waves[{count}] is not a Waves")
        checked[int(count)] = entry
    return dict(sorted(checked.items()))


def _waves_from_json(data: Any, where: str) -> dict[int, Waves] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise WorkloadError(f"{where}: field 'waves' must be an object")
    waves = {}
    for key, entry in data.items():
        try:
            count = int(key)
        except ValueError:
            raise WorkloadError(f"{where}: waves key {key!r} is not an executor count") from None
        waves[count] = Waves.from_json(entry, f"{where} waves[{key}]")
    return waves


@dataclass(eq=False)
class Job:
    """A DAG of stages, arriving at ``arrival_s``; validated on construction (acyclic, known
    parents, unique ids). ``stages`` keeps its given order; ``topological_order`` is derived."""

    name: str
    arrival_s: float
    stages: list[Stage]

    def __post_init__(self) -> None:
        where = f"job {self.name!r}"
        try:
            self.arrival_s = float(self.arrival_s)
        except (TypeError, ValueError):
            raise WorkloadError(f"{where}: field 'arrival_s' is not a number") from None
        if not math.isfinite(self.arrival_s) or self.arrival_s < 0:
            raise WorkloadError(f"{where}: field 'arrival_s' must be finite and >= 0, "
                                f"got {self.arrival_s!r}")
        self.stages = list(self.stages)
        if not self.stages:
            raise WorkloadError(f"{where}: has no stages")
        for stage in self.stages:
            stage.job_name = self.name
        ids = [stage.id for stage in self.stages]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise WorkloadError(f"{where}: duplicate stage id {dup}")
        known = set(ids)
        for stage in self.stages:
            for parent in stage.parents:
                if parent not in known:
                    raise WorkloadError(f"{where} stage {stage.id}: unknown parent {parent}")
                if parent == stage.id:
                    raise WorkloadError(f"{where} stage {stage.id}: is its own parent (cycle)")
        self._topological = self._topological_order()

    def _topological_order(self) -> tuple[int, ...]:
        index = {stage.id: i for i, stage in enumerate(self.stages)}
        indegree = [len(set(stage.parents)) for stage in self.stages]
        children: list[list[int]] = [[] for _ in self.stages]
        for i, stage in enumerate(self.stages):
            for parent in set(stage.parents):
                children[index[parent]].append(i)
        ready = [i for i, d in enumerate(indegree) if d == 0]
        order: list[int] = []
        while ready:
            i = ready.pop()
            order.append(i)
            for child in children[i]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    ready.append(child)
        if len(order) != len(self.stages):
            cyclic = sorted(self.stages[i].id for i, d in enumerate(indegree) if d > 0)
            raise WorkloadError(f"job {self.name!r}: stages {cyclic} form a cycle")
        return tuple(order)

    @property
    def topological_order(self) -> tuple[int, ...]:
        """Positions (indices into ``stages``) in a parents-first order."""
        return self._topological

    @property
    def num_tasks(self) -> int:
        return sum(stage.num_tasks for stage in self.stages)

    @property
    def work_s(self) -> float:
        """Executor-seconds of all tasks at full bandwidth, without delays."""
        return sum(stage.work_s for stage in self.stages)

    @property
    def network_work_s(self) -> float:
        return float(sum(stage.network_s.sum() for stage in self.stages))

    def parent_positions(self) -> list[list[int]]:
        """For each stage position, the positions of its parents."""
        index = {stage.id: i for i, stage in enumerate(self.stages)}
        return [sorted({index[p] for p in stage.parents}) for stage in self.stages]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arrival_s": self.arrival_s,
                "stages": [stage.to_json() for stage in self.stages]}

    @classmethod
    def from_json(cls, data: Any) -> Job:
        if not isinstance(data, dict):
            raise WorkloadError(f"each job must be an object, got {type(data).__name__}")
        name = str(data.get("name", "?"))
        unknown = set(data) - {"name", "arrival_s", "stages"}
        if unknown:
            raise WorkloadError(f"job {name!r}: unknown field(s) {sorted(unknown)}")
        if "stages" not in data or not isinstance(data["stages"], list):
            raise WorkloadError(f"job {name!r}: field 'stages' must be a list")
        stages = [Stage.from_json(s, job_name=name) for s in data["stages"]]
        return cls(name=name, arrival_s=data.get("arrival_s", 0.0), stages=stages)

    def with_arrival(self, arrival_s: float, name: str | None = None) -> Job:
        """A copy arriving at ``arrival_s`` (stages are shared; they are immutable in use)."""
        return Job(name=name or self.name, arrival_s=arrival_s, stages=self.stages)


DURATION_MODELS = ("waves", "fixed")
WARMUP_SCOPES = ("stage", "job")
COMMIT_RULES = ("parents_launched", "parents_finished")


@dataclass(frozen=True)
class ClusterSpec:
    """The cluster and the timing rules of the simulator.

    ``num_executors`` task slots and a network of ``network_capacity``, counted in full-rate
    network phases: while ``n`` tasks are in their network phase each progresses at rate
    ``min(1, network_capacity / n)`` (processor sharing). If one task's link reads ``B_task``
    bytes/s and the cluster's aggregate is ``B_total``, ``network_capacity = B_total / B_task``.
    ``network_flow_overhead`` (``beta``, default 0: work-conserving sharing) is a per-flow
    cost measured on shared links (``python -m benchmarks.spark_contention``): with ``n``
    phases active each progresses at ``min(1, C / n) / (1 + beta * (n - 1))``.

    Rules (defaults = the reference simulators' semantics, decima-sim and spark-sched-sim):

    - ``moving_delay_s``: an executor assigned to a job it does not belong to travels this
      long before it can start a task; with ``move_from_pool`` (default) that includes leaving
      the shared pool (every executor starts there; one returns to it when its job has no task
      left to launch), otherwise only moves between jobs cost.
    - ``duration_model="waves"``: a stage with measured ``waves`` gets each task's duration
      drawn at its start from the entry nearest the job's current executor count, by wave
      (``fresh`` / ``first_wave`` / ``rest_wave``); ``"fixed"`` always uses the per-task
      arrays.
    - ``warmup_s``: for per-task (fixed) durations, paid by an executor's first task of a job
      and, with ``warmup_scope="stage"`` (default), by its first task of every other stage of
      that job (first-wave cost); ``"job"`` charges only the first. With waves, the measured
      lists carry this cost; ``warmup_s`` is added only when a stage has no ``fresh`` list.
    - ``commit_when="parents_launched"``: a stage may receive executors once every parent has
      launched all its tasks (they wait inside the job until the parents finish, as in
      Spark); ``"parents_finished"``: only after the parents finished.
    """

    num_executors: int = 50
    network_capacity: float = 10.0
    network_flow_overhead: float = 0.0
    moving_delay_s: float = 2.0
    warmup_s: float = 1.0
    duration_model: str = "waves"
    warmup_scope: str = "stage"
    move_from_pool: bool = True
    commit_when: str = "parents_launched"

    def __post_init__(self) -> None:
        if (isinstance(self.num_executors, bool) or not isinstance(self.num_executors, int)
                or self.num_executors < 1):
            raise WorkloadError(f"cluster: num_executors must be an integer >= 1, "
                                f"got {self.num_executors!r}")
        if not (math.isfinite(self.network_capacity) and self.network_capacity > 0):
            raise WorkloadError(f"cluster: network_capacity must be > 0, "
                                f"got {self.network_capacity!r}")
        for name in ("network_flow_overhead", "moving_delay_s", "warmup_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise WorkloadError(f"cluster: {name} must be finite and >= 0, got {value!r}")
        for name, allowed in (("duration_model", DURATION_MODELS),
                              ("warmup_scope", WARMUP_SCOPES), ("commit_when", COMMIT_RULES)):
            if getattr(self, name) not in allowed:
                raise WorkloadError(f"cluster: {name} must be one of {allowed}, "
                                    f"got {getattr(self, name)!r}")

    @classmethod
    def legacy(cls, **overrides: Any) -> ClusterSpec:
        """The rules before the reference semantics (fixed durations, warm-up once per job,
        free first moves, stages open only after their parents finished)."""
        rules = {"duration_model": "fixed", "warmup_scope": "job", "move_from_pool": False,
                 "commit_when": "parents_finished"}
        return cls(**{**rules, **overrides})


def scale_network(jobs: Iterable[Job], factor: float) -> list[Job]:
    """``jobs`` with every network phase ``factor`` times as long (a link ``factor`` times
    slower), compute and write unchanged: per-task ``network_s`` and, in measured waves,
    each duration ``d`` with network fraction ``f`` becomes ``d (1 - f + factor f)``."""
    if not (math.isfinite(factor) and factor > 0):
        raise WorkloadError(f"network scale factor must be > 0, got {factor!r}")
    scaled = []
    for job in jobs:
        stages = []
        for stage in job.stages:
            waves = None
            if stage.waves:
                waves = {}
                for count, w in stage.waves.items():
                    stretch = 1.0 - w.network_fraction + factor * w.network_fraction
                    waves[count] = Waves(tuple(d * stretch for d in w.first_wave),
                                         tuple(d * stretch for d in w.rest_wave),
                                         tuple(d * stretch for d in w.fresh),
                                         factor * w.network_fraction / stretch)
            stages.append(Stage(stage.id, stage.parents, stage.num_tasks,
                                stage.network_s * factor, stage.compute_s, stage.write_s,
                                stage.network_bytes, stage.name, job.name, waves))
        scaled.append(Job(job.name, job.arrival_s, stages))
    return scaled


def jobs_to_json(jobs: Iterable[Job]) -> dict[str, Any]:
    return {"format": WORKLOAD_FORMAT, "jobs": [job.to_json() for job in jobs]}


def jobs_from_json(data: Any, source: str = "<json>") -> list[Job]:
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise WorkloadError(f"{source}: expected an object with a 'jobs' list")
    if data.get("format", WORKLOAD_FORMAT) != WORKLOAD_FORMAT:
        raise WorkloadError(f"{source}: unknown format {data['format']!r}, "
                            f"expected {WORKLOAD_FORMAT!r}")
    jobs = []
    for position, entry in enumerate(data["jobs"]):
        try:
            jobs.append(Job.from_json(entry))
        except WorkloadError as error:
            raise WorkloadError(f"{source}: jobs[{position}]: {error}") from None
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise WorkloadError(f"{source}: duplicate job name {dup!r}")
    return jobs


def save_workload(jobs: Iterable[Job], path: str | Path) -> Path:
    """Write ``jobs`` as workload JSON to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jobs_to_json(jobs)))
    return path


def load_workload(path: str | Path) -> list[Job]:
    """Read workload JSON; errors name the file, job, stage and field."""
    path = Path(path)
    data, _ = load_json(path, WorkloadError)
    return jobs_from_json(data, source=str(path))


def load_wave_traces(directory: str | Path) -> dict[str, list[Job]]:
    """Every workload JSON in ``directory`` whose stages all carry measured ``waves`` (the
    traces recorded at several executor counts), by file name."""
    found = {}
    for path in sorted(Path(directory).glob("*.json")):
        jobs = load_workload(path)
        if all(stage.waves for job in jobs for stage in job.stages):
            found[path.name] = jobs
    return found


_SIZE_DIR = re.compile(r"^\d+g$")
_ADJ_FILE = re.compile(r"^adj_mat_(\d+)\.npy$")


def _decima_waves(entry: dict, where: str) -> dict[int, Waves]:
    """Decima's pre-processing: fresh durations removed from the first wave (once per
    occurrence), an empty first wave filled from the nearest lower executor count."""
    waves: dict[int, Waves] = {}
    previous_first: list[float] = []
    for count in sorted(entry["first_wave"]):
        fresh = [float(d) / 1000.0 for d in entry.get("fresh_durations", {}).get(count, [])]
        unmatched = Counter(fresh)
        first = []
        for d in (float(d) / 1000.0 for d in entry["first_wave"][count]):
            if unmatched[d] > 0:
                unmatched[d] -= 1
            else:
                first.append(d)
        first = first or previous_first
        previous_first = first
        rest = [float(d) / 1000.0 for d in entry.get("rest_wave", {}).get(count, [])]
        if not (first or rest or fresh):
            continue
        waves[int(count)] = Waves(tuple(first), tuple(rest), tuple(fresh))
    if not waves:
        raise WorkloadError(f"{where}: no task durations at any executor count")
    return waves


def _decima_job(size_dir: Path, query: int, shuffle_network_fraction: float) -> Job:
    name = f"{size_dir.name}/q{query}"
    adj_path = size_dir / f"adj_mat_{query}.npy"
    dur_path = size_dir / f"task_duration_{query}.npy"
    if not dur_path.exists():
        raise WorkloadError(f"{dur_path}: missing (needed by {adj_path.name})")
    adjacency = np.load(adj_path, allow_pickle=True)
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise WorkloadError(f"{adj_path}: expected a square matrix, got shape {adjacency.shape}")
    try:
        durations = np.load(dur_path, allow_pickle=True).item()
    except (ValueError, OSError) as error:
        raise WorkloadError(f"{dur_path}: not a pickled dict ({error})") from None
    num_stages = adjacency.shape[0]
    if not isinstance(durations, dict) or sorted(durations) != list(range(num_stages)):
        raise WorkloadError(f"{dur_path}: expected a dict with keys 0..{num_stages - 1}")
    stages = []
    for index in range(num_stages):
        entry = durations[index]
        where = f"{dur_path} stage {index}"
        if not isinstance(entry, dict) or not entry.get("first_wave"):
            raise WorkloadError(f"{where}: missing 'first_wave'")
        # Decima's rule: the first executor-count key fixes num_tasks (first + rest wave).
        executors = next(iter(entry["first_wave"]))
        num_tasks = len(entry["first_wave"][executors]) + len(
            entry.get("rest_wave", {}).get(executors, []))
        if num_tasks == 0:
            raise WorkloadError(f"{where}: no task durations for {executors} executors")
        parents = tuple(int(p) for p in np.flatnonzero(adjacency[:, index]))
        fraction = shuffle_network_fraction if parents else 0.0
        waves = {count: Waves(w.first_wave, w.rest_wave, w.fresh, fraction)
                 for count, w in _decima_waves(entry, where).items()}
        # The fixed model: that key's warm (first + rest wave) durations, cycled to num_tasks.
        warm = next((w for w in waves.values() if w.first_wave or w.rest_wave), None)
        samples = np.asarray(warm.first_wave + warm.rest_wave if warm else
                             next(iter(waves.values())).fresh)
        task_s = samples[np.arange(num_tasks) % samples.size]
        try:
            stages.append(Stage(id=index, parents=parents, num_tasks=num_tasks,
                                network_s=task_s * fraction, compute_s=task_s * (1 - fraction),
                                job_name=name, waves=waves))
        except WorkloadError as error:
            raise WorkloadError(f"{dur_path}: {error}") from None
    try:
        return Job(name=name, arrival_s=0.0, stages=stages)
    except WorkloadError as error:
        raise WorkloadError(f"{adj_path}: {error}") from None


def load_decima_tpch(directory: str | Path, sizes: Sequence[str] | None = None,
                     queries: Sequence[int] | None = None,
                     shuffle_network_fraction: float = 0.0) -> list[Job]:
    """Load the public Decima TPC-H traces: one job per size folder and query, ``"<size>/q<n>"``.

    Layout: ``directory/<size>/adj_mat_<q>.npy`` (N x N 0/1, ``adj[i, j] = 1`` means stage ``i``
    is a parent of ``j``) and ``task_duration_<q>.npy`` (a pickled dict ``stage -> {"first_wave",
    "rest_wave", "fresh_durations"}``, each ``executor count -> [task ms]``). As in Decima, the
    first executor-count key of ``first_wave`` fixes the number of tasks (its first-wave plus
    rest-wave durations); every executor count becomes a :class:`Waves` entry after Decima's
    pre-processing (fresh durations taken out of the first wave, an empty first wave filled
    from the nearest lower count), so the default ``duration_model="waves"`` draws durations as
    decima-sim does. The fixed per-task arrays hold the first count's warm durations. Stage ids
    are matrix indices; all jobs arrive at 0. The traces do not split phases:
    ``shuffle_network_fraction`` of each task of a stage with parents becomes its network phase,
    the rest compute. The duration files are pickles: load only trusted data.
    """
    root = Path(directory)
    if not root.is_dir():
        raise WorkloadError(f"{root}: not a directory")
    if not 0.0 <= shuffle_network_fraction < 1.0:
        raise WorkloadError(f"shuffle_network_fraction must be in [0, 1), "
                            f"got {shuffle_network_fraction!r}")
    size_dirs = sorted((p for p in root.iterdir() if p.is_dir() and _SIZE_DIR.match(p.name)),
                       key=lambda p: int(p.name[:-1]))
    if sizes is not None:
        size_dirs = [p for p in size_dirs if p.name in set(sizes)]
    jobs = []
    for size_dir in size_dirs:
        found = sorted(int(m.group(1)) for f in size_dir.iterdir() if (m := _ADJ_FILE.match(f.name)))
        for query in found:
            if queries is None or query in set(queries):
                jobs.append(_decima_job(size_dir, query, shuffle_network_fraction))
    if not jobs:
        raise WorkloadError(f"{root}: no Decima TPC-H queries found (expected <size>/adj_mat_<q>.npy "
                            f"with size folders like 2g, 10g)")
    return jobs
