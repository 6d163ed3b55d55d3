"""The device runtime: runs a batch of inference jobs split between this device and a server.

    python -m device_bridge.client --server HOST:PORT --jobs resnet18:8,alexnet:4
        --scheduler joint|<model.zip> --bandwidth-mbps 5.85 --token-file F --json OUT
        [--latency-ms 5] [--threads 1] [--profile-repetitions 5] [--fp16]
        [--replan-drift 0.25] [--no-calibrate] [--tls-cert server.crt]

Steps: set the device's torch thread count (``--threads``, default 1: one phone-like core),
profile every segment of the batch's models on this device under that setting (or, with
``--profile-repetitions 0``, rescale the shipped profiles by whole-model runs), connect and
authenticate (mutually: a server that cannot prove the token is refused; ``--tls-cert``
adds TLS pinned to that certificate), measure the server (its reported whole-model time) and
the link (an empty probe for latency, a sized probe for bandwidth, both while the device
computes as it will during the batch), ask the Scheduler for a plan, then run it:
the calling thread is the device's compute thread (prefixes in plan order), an upload thread
sends cut tensors in plan order through the token bucket, and a receiver thread collects
results. A job whose cut is ``0``
is ready to upload at once (it needs no device time), as in the simulator. A sequential plan
(``neurosurgeon``) starts a job only when the previous one has finished. When the moving
average of measured upload rates drifts more than ``--replan-drift`` from the bandwidth the
plan assumed, the jobs not yet started are re-planned with the measured bandwidth.

No server can stop the device from finishing its work. If the server cannot be reached,
refuses us, fails to prove the token, sends anything malformed or unexpected (at connect, on
a reconnect or mid-batch), stalls, or dies, it is dropped (the reason recorded), every job it
had not answered is finished on the device from the tensor at its cut, and later jobs run
whole on the device; the client tries to reconnect before each job start (at most once per
``reconnect_interval_s``) and offloads again once it is back. Exit status 0 when every job
has a result, whatever the server did; 2 only for bad arguments (a token shorter than 32
bytes, or a token file open to group or others, included). ``OUT`` holds ``makespan_s``,
the simulator's ``predicted_makespan_s`` for the executed plan, one entry per job with
``name``, ``cut``, ``where`` (``server`` or ``local``), ``latency_s``, ``fallback`` (planned
to use the server, finished on the device) and ``reason`` (why, for a fallback), a
``summary`` counting them, and the instance, for replay.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_bridge import protocol
from device_bridge.link import HANDSHAKE_TIMEOUT_S, STALL_TIMEOUT_S, HandshakeError, ServerLink
from device_bridge.model_names import SUPPORTED_MODELS
from device_bridge.shaping import ShapedSender
from device_bridge.tls import PinnedServerTls
from envs.offload import OffloadInstance, Plan, simulate

if TYPE_CHECKING:  # torch loads when a client starts: --help and argument errors answer at once
    import torch

    from device_bridge.graph_split import SplitModel

LOG = logging.getLogger("device_bridge.client")
Planner = Callable[[OffloadInstance], Plan]
MIN_RATE_SAMPLE_BYTES = 16 * 1024
RATE_EWMA_WEIGHT = 0.3


@dataclass(eq=False)  # identity semantics: jobs are tracked in queues
class JobRun:
    index: int
    name: str
    model: str
    input: torch.Tensor
    segments: int                   # L: cut L runs the whole model on the device
    cut: int = 0
    planned_cut: int = 0
    state: str = "pending"          # pending, ready, inflight, orphan, done
    where: str = ""
    request_id: int = -1
    cut_tensor: torch.Tensor | None = None
    output: torch.Tensor | None = None
    done_at: float = 0.0
    device_s: float = 0.0
    device_cpu_s: float = 0.0      # CPU time of the compute thread in device_s (< it: preempted)
    upload_s: float = 0.0
    server_s: float = 0.0
    bytes_sent: int = 0
    uploaded_at: float = 0.0
    ready_at: float = 0.0           # when its cut tensor was ready to upload
    reason: str = ""                # why a job planned for the server finished locally

    @property
    def fallback(self) -> bool:
        """Planned to run (partly) on the server, finished on the device."""
        return self.where == "local" and self.planned_cut < self.segments

    def summary(self, start: float) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "cut": self.cut,
                "planned_cut": self.planned_cut, "where": self.where,
                "fallback": self.fallback, "reason": self.reason if self.fallback else None,
                "latency_s": self.done_at - start, "device_s": self.device_s,
                "device_cpu_s": self.device_cpu_s,
                "upload_s": self.upload_s, "server_s": self.server_s,
                "bytes_sent": self.bytes_sent}


@dataclass
class BatchResult:
    makespan_s: float
    predicted_makespan_s: float
    jobs: list[JobRun]
    start: float
    plan: Plan
    instance: OffloadInstance
    replans: int = 0
    link: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts per batch: where jobs finished, and the fallbacks with their reasons."""
        fallbacks = [job for job in self.jobs if job.fallback]
        return {"jobs": len(self.jobs),
                "server": sum(job.where == "server" for job in self.jobs),
                "local_planned": sum(job.where == "local" and not job.fallback
                                     for job in self.jobs),
                "fallback": len(fallbacks),
                "fallback_reasons": dict(Counter(job.reason for job in fallbacks))}

    def to_dict(self) -> dict[str, Any]:
        return {"makespan_s": self.makespan_s,
                "predicted_makespan_s": self.predicted_makespan_s,
                "summary": self.summary(),
                "replans": self.replans, "link": self.link,
                "plan": [list(step) for step in self.plan.steps],
                "sequential": self.plan.sequential,
                "jobs": [job.summary(self.start) for job in self.jobs],
                "instance": self.instance.to_dict()}


@contextmanager
def device_load(splits: Iterable[SplitModel]) -> Iterator[None]:
    """While the block runs, a thread keeps the device computing whole passes of ``splits``
    in turn (on this process's torch threads), as it does while a batch uploads; nothing
    when ``splits`` is empty."""
    models = list(splits)
    if not models:
        yield
        return
    import torch

    stop = threading.Event()
    inputs = [torch.zeros(split.input_shape) for split in models]

    def compute() -> None:
        while True:
            for split, x in zip(models, inputs, strict=True):
                if stop.is_set():
                    return
                split.run_range(0, split.num_segments, x)

    thread = threading.Thread(target=compute, name="device-load", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def parse_jobs(spec: str) -> list[tuple[str, str]]:
    """``"resnet18:2,alexnet:1"`` -> ``[("resnet18-0", "resnet18"), ("resnet18-1", ...), ...]``."""
    jobs = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        model, _, count = part.partition(":")
        if model not in SUPPORTED_MODELS:
            raise ValueError(f"--jobs: unknown model {model!r}; supported: "
                             f"{', '.join(SUPPORTED_MODELS)}")
        try:
            number = int(count) if count else 1
        except ValueError:
            raise ValueError(f"--jobs: bad count {count!r} for {model}") from None
        if number < 1:
            raise ValueError(f"--jobs: count for {model} must be >= 1, got {number}")
        jobs += [(f"{model}-{i}", model) for i in range(number)]
    if not jobs:
        raise ValueError("--jobs names no job")
    return jobs


def make_planner(scheduler: str) -> Planner:
    """A heuristic name from ``heuristics.offload.HEURISTICS`` or the path of a MaskablePPO zip."""
    from heuristics.offload import HEURISTICS

    if scheduler in HEURISTICS:
        return HEURISTICS[scheduler]
    if scheduler.endswith(".zip") or Path(scheduler).exists():
        from agents.model_check import ModelError, load_for_env
        from agents.offload.planning import plan_with_model
        from envs import PROBLEMS

        try:  # a missing file or a model of another env fails here, before any connection
            load_for_env(scheduler, PROBLEMS["offload"].env_id, check_shapes=False)
        except ModelError as error:
            raise ValueError(f"--scheduler: {error}") from None

        return lambda instance: plan_with_model(scheduler, instance)
    raise ValueError(f"--scheduler: {scheduler!r} is neither a heuristic "
                     f"({', '.join(HEURISTICS)}) nor a model .zip")


class OffloadClient:
    """Device side of live offloading; reusable across batches (it reconnects as needed)."""

    def __init__(self, server: tuple[str, int], token: bytes, models: Sequence[str],
                 bandwidth_mbps: float | None, latency_s: float = 0.005, fp16: bool = False,
                 shape_uplink: bool = True,
                 replan_drift: float = 0.25, reconnect_interval_s: float = 1.0,
                 result_timeout_s: float = 60.0, calibrate: bool = True,
                 threads: int = 1, profile_repetitions: int = 0,
                 tls: PinnedServerTls | None = None,
                 handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
                 stall_timeout_s: float = STALL_TIMEOUT_S):
        protocol.check_token(token)
        if bandwidth_mbps is not None and bandwidth_mbps <= 0:
            raise ValueError(f"bandwidth_mbps must be > 0, got {bandwidth_mbps}")
        if threads < 1 or profile_repetitions < 0:
            raise ValueError(f"need threads >= 1 and profile_repetitions >= 0, got {threads}, "
                             f"{profile_repetitions}")
        # the device's compute runs with this many torch intra-op threads (1: one phone core);
        # every device measurement below is taken under the same setting
        import torch

        from device_bridge.graph_split import SplitModel, weights_hash
        from device_bridge.live_instance import (
            measure_whole_model_s,
            profile_device,
            profile_whole_model_s,
        )

        self.threads = threads
        torch.set_num_threads(threads)
        self.server = server
        self.token = token
        self.tls = tls
        self.handshake_timeout_s = handshake_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.link: ServerLink | None = None
        self.link_down_reason = "not connected yet"
        self.drops: Counter[str] = Counter()  # why the server was dropped, this batch
        self.set_uplink(bandwidth_mbps, latency_s, shape_uplink)
        self.fp16 = fp16
        self.replan_drift = replan_drift
        self.reconnect_interval_s = reconnect_interval_s
        self.result_timeout_s = result_timeout_s
        self.calibrate = calibrate
        self.splits = {name: SplitModel(name) for name in dict.fromkeys(models)}
        self.hashes = {name: weights_hash(split.model) for name, split in self.splits.items()}
        self.device_scale: dict[str, float] = {}
        self.device_profiles: dict[str, dict] = {}
        if profile_repetitions:
            self.device_profiles = profile_device(self.splits, profile_repetitions)
        elif calibrate:
            for name, seconds in measure_whole_model_s(self.splits).items():
                self.device_scale[name] = seconds / profile_whole_model_s(name)
        self.server_device = ""
        self.server_speedup: dict[str, float] = {}
        self._last_connect_attempt = -1e9
        self._request_ids = itertools.count(1)
        self._cv = threading.Condition()
        self._rate_mbps: float | None = None
        self._rate_samples = 0
        self._reset_batch_state()
        self.try_connect()

    def set_uplink(self, bandwidth_mbps: float | None, latency_s: float,
                   shape: bool = True) -> None:
        """Emulate ``bandwidth_mbps`` with the token bucket (``shape``), or leave the rate to
        the path (a real or kernel-shaped link: the rate then only sizes the probe); the
        latency is added before each upload either way."""
        self.nominal_bandwidth_mbps = bandwidth_mbps
        self.sender = ShapedSender(bandwidth_mbps if shape else None, latency_s)
        self.measured_bandwidth_mbps: float | None = None
        self.measured_latency_s: float | None = None
        if self.link is not None:
            self.link.sender = self.sender

    # ---- connection -------------------------------------------------------------------
    def try_connect(self) -> bool:
        """Connect and authenticate; ``False`` (the reason in ``link_down_reason``) when the
        server is unreachable, refuses us or fails the handshake in any way."""
        self._last_connect_attempt = time.perf_counter()
        output_shapes = {name: split.boundary_shape(split.num_segments)
                         for name, split in self.splits.items()}
        link = ServerLink(self.server[0], self.server[1], self.token, self.hashes, self.sender,
                          self._on_result, self._on_link_failure, connect_timeout_s=2.0,
                          tls=self.tls, handshake_timeout_s=self.handshake_timeout_s,
                          output_shapes=output_shapes, stall_timeout_s=self.stall_timeout_s)
        try:
            link.connect()
        except HandshakeError as error:
            LOG.warning("server %s:%d failed the handshake, jobs run on the device: %s",
                        *self.server, error)
            self._dropped(f"handshake failed: {error}")
            return False
        except OSError as error:
            LOG.info("server %s:%d unavailable: %s", *self.server, error)
            self._dropped(f"server unavailable: {error}")
            return False
        with self._cv:
            self.link = link
        self.server_device = link.server_device
        for name, server_s in link.server_whole_model_s.items():
            if (self.calibrate or name in self.device_profiles) and server_s > 0:
                self.server_speedup[name] = self.device_whole_model_s(name) / server_s
        LOG.info("connected to %s:%d (server device %r)", *self.server, link.server_device)
        return True

    def _dropped(self, reason: str) -> None:
        """The server is not usable now, for ``reason`` (given to the jobs this affects)."""
        self.link_down_reason = reason
        self.drops[reason] += 1

    def device_whole_model_s(self, model: str) -> float:
        """The whole-model device time the instance's layer times add up to."""
        if model in self.device_profiles:
            return self.device_profiles[model]["provenance"]["whole_model_median_s"]
        from device_bridge.live_instance import profile_whole_model_s

        return profile_whole_model_s(model)

    def measure_link(self, probe_seconds: float = 0.25,
                     under_load: bool = True) -> tuple[float, float]:
        """Latency from empty probes; bandwidth from the slope between a small and a large
        probe, which cancels latency and any burst allowance of the shaper.

        ``under_load``: the device computes meanwhile (whole passes of this client's models,
        on this process's torch threads), as it does while a batch uploads, so the probe
        sees the uplink the batch will get, sender-thread delays included."""
        link = self.link
        if link is None:
            raise ConnectionError("no server connection")
        timeout_s = self.result_timeout_s
        with device_load(self.splits.values() if under_load else ()):
            link.probe(0, timeout_s)  # the first round trip pays connection warm-up
            empty_s = min(link.probe(0, timeout_s) for _ in range(3))
            nominal = self.nominal_bandwidth_mbps or 100.0
            large = int(min(max(nominal * 1e6 / 8 * probe_seconds, 32 * 1024), 8 * 2**20))
            small = large // 4
            small_s, large_s = link.probe(small, timeout_s), link.probe(large, timeout_s)
        self.measured_latency_s = empty_s
        self.measured_bandwidth_mbps = 8 * (large - small) / max(large_s - small_s, 1e-6) / 1e6
        return self.measured_bandwidth_mbps, self.measured_latency_s

    def _try_measure_link(self) -> None:
        """``measure_link`` if connected; a server that fails the probes is dropped (the
        batch is planned with the nominal rate and latency, and runs on the device)."""
        link = self.link
        if link is None:
            return
        try:
            self.measure_link()
        except OSError as error:
            link.fail(f"link probe failed: {error}")

    def close(self) -> None:
        with self._cv:
            link, self.link = self.link, None
        if link is not None:
            link.close()

    # ---- callbacks from the link threads ------------------------------------------------
    def _on_result(self, request_id: int, tensor: torch.Tensor, server_s: float,
                   arrived: float) -> None:
        with self._cv:
            job = self._inflight.pop(request_id, None)
            if job is None or job.state == "done":
                return
            job.output, job.server_s, job.where = tensor, server_s, "server"
            self._finish(job, arrived)

    def _on_link_failure(self, link: ServerLink, reason: str) -> None:
        with self._cv:
            if self.link is link:
                self.link = None
            self._dropped(f"server connection lost: {reason}")
            for job in self._inflight.values():
                job.state, job.reason = "orphan", self.link_down_reason
                self._orphans.append(job)
            self._inflight.clear()
            self._cv.notify_all()

    # ---- batch execution ----------------------------------------------------------------
    def _reset_batch_state(self) -> None:
        self._jobs: list[JobRun] = []
        self._steps: deque[tuple[int, int]] = deque()
        self._upload_order: deque[JobRun] = deque()
        self._inflight: dict[int, JobRun] = {}
        self._orphans: deque[JobRun] = deque()
        self._execution_order: list[JobRun] = []
        self._done = 0
        self._stop = False
        self._sequential = False
        self._plan_bandwidth_mbps = 0.0
        self._rate_samples = 0
        self._rate_mbps = None

    def _finish(self, job: JobRun, when: float) -> None:
        job.state, job.done_at = "done", when
        job.cut_tensor = None
        self._done += 1
        self._cv.notify_all()

    def plan_instance(self, jobs: Sequence[tuple[str, str]]) -> OffloadInstance:
        bandwidth = (self.measured_bandwidth_mbps or self.nominal_bandwidth_mbps or 100.0)
        latency = self.measured_latency_s if self.measured_latency_s is not None \
            else self.sender.latency_s
        from device_bridge.live_instance import build_instance

        return build_instance(jobs, bandwidth, latency, self.device_scale, self.server_speedup,
                              2 if self.fp16 else 4, self.device_profiles)

    def run(self, jobs: Sequence[tuple[str, str]], planner: Planner,
            instance: OffloadInstance | None = None, seed: int = 0,
            progress: Callable[[int], None] | None = None,
            warmup: bool = True) -> BatchResult:
        """Plan and execute one batch; every job gets a result (from the server or local).

        With ``warmup`` every distinct (model, cut) prefix of the plan runs once before the
        clock starts, so the batch runs warm code and caches, as the profiles were measured.
        """
        import torch

        for _, model in jobs:
            if model not in self.splits:
                raise ValueError(f"model {model!r} was not loaded by this client")
        self.drops = Counter()
        if self.link is None:
            self.try_connect()
        if instance is None:
            self._try_measure_link()
            instance = self.plan_instance(jobs)
        plan = planner(instance)
        predicted = simulate(instance, plan).makespan_s
        prefixes = dict.fromkeys((jobs[job_index][1], cut) for job_index, cut in plan.steps)
        for model, cut in prefixes:  # build (and warm) the prefix graphs before the clock
            split = self.splits[model]
            split.range_module(0, cut)
            if warmup and cut > 0:
                split.run_range(0, cut, torch.zeros(split.input_shape))
        generator = torch.Generator().manual_seed(seed)
        self._reset_batch_state()
        self._jobs = [JobRun(i, name, model,
                             torch.randn(self.splits[model].input_shape, generator=generator),
                             self.splits[model].num_segments)
                      for i, (name, model) in enumerate(jobs)]
        self._planner, self._instance = planner, instance
        self._plan_bandwidth_mbps = instance.bandwidth_mbps
        self._sequential = plan.sequential
        self._apply_plan(list(plan.steps))
        replans = 0
        start = time.perf_counter()
        uploader = threading.Thread(target=self._upload_loop, name="uploader", daemon=True)
        uploader.start()
        try:
            replans = self._compute_loop(progress)
        finally:
            with self._cv:
                self._stop = True
                self._cv.notify_all()
            uploader.join()
        makespan = max(job.done_at for job in self._jobs) - start
        order = self._execution_order + [job for job in self._jobs
                                         if job not in self._execution_order]
        executed = Plan(tuple((job.index, job.cut) for job in order), plan.sequential)
        return BatchResult(makespan, predicted, self._jobs, start, executed, instance, replans,
                           {"planned_bandwidth_mbps": instance.bandwidth_mbps,
                            "planned_latency_s": instance.latency_s,
                            "measured_upload_mbps": self._rate_mbps,
                            "server_device": self.server_device,
                            "server_drops": dict(self.drops)})

    def _apply_plan(self, steps: list[tuple[int, int]]) -> None:
        """Install ``steps`` for jobs not yet started; called with the lock held or before run."""
        self._steps = deque(steps)
        for job_index, cut in steps:
            job = self._jobs[job_index]
            job.cut = job.planned_cut = cut
            job.state = "pending"
            job.cut_tensor = None
            if cut < self.splits[job.model].num_segments:
                self._upload_order.append(job)
            if cut == 0 and not self._sequential:
                job.state, job.cut_tensor = "ready", self._wire_tensor(job.input)
                job.ready_at = time.perf_counter()

    def _wire_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.half() if self.fp16 else tensor

    def _maybe_replan(self) -> bool:
        """Re-plan the jobs not yet started when the measured rate drifted; lock held."""
        if (self._rate_mbps is None or self._rate_samples < 2
                or abs(self._rate_mbps - self._plan_bandwidth_mbps)
                <= self.replan_drift * self._plan_bandwidth_mbps):
            return False
        # not started: not yet taken by the compute thread, or a cut-0 job still queued
        remaining = [job for job in self._jobs
                     if (job.state == "pending" and job not in self._execution_order)
                     or (job.state == "ready" and job.cut == 0 and job in self._upload_order)]
        if not remaining:
            return False
        sub = OffloadInstance(self._rate_mbps, self._instance.latency_s,
                              tuple(self._instance.jobs[job.index] for job in remaining))
        sub_plan = self._planner(sub)
        LOG.info("measured %.2f Mbit/s vs planned %.2f: re-planning %d jobs", self._rate_mbps,
                 self._plan_bandwidth_mbps, len(remaining))
        replanned = {job.index for job in remaining}
        self._upload_order = deque(job for job in self._upload_order
                                   if job.index not in replanned)
        self._execution_order = [job for job in self._execution_order
                                 if job.index not in replanned]
        self._plan_bandwidth_mbps = self._rate_mbps
        self._rate_samples = 0
        self._apply_plan([(remaining[j].index, cut) for j, cut in sub_plan.steps])
        self._sequential = sub_plan.sequential
        self._cv.notify_all()
        return True

    def _next_action(self, progress: Callable[[int], None] | None,
                     replans: list[int]) -> tuple[str, JobRun | None, int]:
        with self._cv:
            while True:
                if self._orphans:
                    return "orphan", self._orphans.popleft(), 0
                if self._maybe_replan():
                    replans[0] += 1
                started = self._execution_order
                if self._steps and (not self._sequential
                                    or all(job.state == "done" for job in started)):
                    job_index, cut = self._steps.popleft()
                    return "start", self._jobs[job_index], cut
                if self._done == len(self._jobs):
                    return "finished", None, 0
                self._check_watchdog()
                if progress:
                    progress(self._done)
                self._cv.wait(0.05)

    def _check_watchdog(self) -> None:
        now = time.perf_counter()
        overdue = [job for job in self._inflight.values()
                   if job.uploaded_at and now - job.uploaded_at > self.result_timeout_s]
        if overdue and self.link is not None:
            # the condition's lock is re-entrant, so the failure handler can run right here
            self.link.fail(f"no result for {overdue[0].name} within {self.result_timeout_s} s")

    def _compute_loop(self, progress: Callable[[int], None] | None) -> int:
        replans = [0]
        while True:
            action, job, cut = self._next_action(progress, replans)
            if action == "finished":
                if progress:
                    progress(self._done)
                return replans[0]
            if action == "orphan":
                self._run_locally(job, job.cut)
                continue
            self._execution_order.append(job)
            if self.link is None and time.perf_counter() - self._last_connect_attempt \
                    >= self.reconnect_interval_s:
                self.try_connect()
            num_segments = self.splits[job.model].num_segments
            with self._cv:
                link_down = self.link is None
                if job.state != "pending" and not (job.state == "ready" and link_down):
                    continue  # a ready cut-0 job belongs to the uploader now
                if link_down and cut < num_segments:
                    if job in self._upload_order:
                        self._upload_order.remove(job)
                    job.state, job.reason = "orphan", self.link_down_reason
            if job.state == "orphan":
                self._run_locally(job, 0)
                continue
            if cut == 0:
                with self._cv:
                    job.state, job.cut_tensor = "ready", self._wire_tensor(job.input)
                    job.ready_at = time.perf_counter()
                    self._cv.notify_all()
                continue
            began, began_cpu = time.perf_counter(), time.thread_time()
            tensor = self.splits[job.model].run_range(0, cut, job.input)
            finished = time.perf_counter()
            job.device_s, job.device_cpu_s = finished - began, time.thread_time() - began_cpu
            with self._cv:
                if cut == num_segments:
                    job.output, job.where = tensor, "local"
                    self._finish(job, finished)
                else:
                    job.state, job.cut_tensor = "ready", self._wire_tensor(tensor)
                    job.ready_at = finished
                    self._cv.notify_all()

    def _run_locally(self, job: JobRun, from_cut: int) -> None:
        """Finish ``job`` on the device from the tensor at ``from_cut`` (0: the input)."""
        split = self.splits[job.model]
        tensor = job.input if from_cut == 0 or job.cut_tensor is None else job.cut_tensor
        if from_cut and job.cut_tensor is None:
            from_cut = 0
        began, began_cpu = time.perf_counter(), time.thread_time()
        output = split.run_range(from_cut, split.num_segments, tensor.float())
        finished, cpu_s = time.perf_counter(), time.thread_time() - began_cpu
        with self._cv:
            if job.state == "done":
                return
            job.device_s += finished - began
            job.device_cpu_s += cpu_s
            job.output, job.where, job.cut = output, "local", split.num_segments
            self._finish(job, finished)

    def _upload_loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not (self._upload_order
                                              and self._upload_order[0].state == "ready"):
                    self._cv.wait(0.05)
                if self._stop:
                    return
                job = self._upload_order.popleft()
                link = self.link
                if link is None:
                    job.state, job.reason = "orphan", self.link_down_reason
                    self._orphans.append(job)
                    self._cv.notify_all()
                    continue
                job.request_id = next(self._request_ids)
                job.state = "inflight"
                self._inflight[job.request_id] = job
                tensor = job.cut_tensor
            began = time.perf_counter()
            try:
                sent = link.send_infer(job.request_id, job.model, job.cut, tensor, job.ready_at)
            except OSError:
                continue  # the link's failure handler has orphaned every in-flight job
            ended = time.perf_counter()
            with self._cv:
                job.upload_s, job.bytes_sent, job.uploaded_at = ended - began, sent, ended
                transfer_s = job.upload_s - self.sender.latency_s
                if sent >= MIN_RATE_SAMPLE_BYTES and transfer_s > 0:
                    rate = 8 * sent / transfer_s / 1e6
                    self._rate_mbps = rate if self._rate_mbps is None else (
                        (1 - RATE_EWMA_WEIGHT) * self._rate_mbps + RATE_EWMA_WEIGHT * rate)
                    self._rate_samples += 1


def print_table(result: BatchResult, stream=sys.stdout) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"makespan {result.makespan_s:.3f} s (simulator predicted "
                        f"{result.predicted_makespan_s:.3f} s)")
    for column in ("job", "cut", "where", "latency s", "device s", "upload s", "server s"):
        table.add_column(column)
    for job in result.jobs:
        row = job.summary(result.start)
        table.add_row(row["name"], f"{row['cut']}", row["where"], f"{row['latency_s']:.3f}",
                      f"{row['device_s']:.3f}", f"{row['upload_s']:.3f}",
                      f"{row['server_s']:.4f}")
    Console(file=stream).print(table)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m device_bridge.client",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="HOST:PORT")
    parser.add_argument("--jobs", required=True, help="MODEL:N,... e.g. resnet18:8,alexnet:4")
    parser.add_argument("--scheduler", default="joint",
                        help="a heuristic name (joint, neurosurgeon, ...) or a model .zip")
    parser.add_argument("--bandwidth-mbps", type=float, required=True,
                        help="emulated uplink rate (token bucket on this socket)")
    parser.add_argument("--no-shaping", action="store_true",
                        help="no token bucket (a real or kernel-shaped path); the rate only "
                             "sizes the bandwidth probe, --latency-ms is still added")
    parser.add_argument("--latency-ms", type=float, default=5.0,
                        help="emulated one-way latency added before each upload")
    parser.add_argument("--token-file", required=True,
                        help="shared secret, >= 32 bytes, no group or other access (chmod 600)")
    parser.add_argument("--json", dest="json_out", help="write the result JSON here")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for the device compute (1 = one core, "
                             "as a phone); the device is profiled under the same setting")
    parser.add_argument("--profile-repetitions", type=int, default=5,
                        help="time every segment of the batch's models on this device before "
                             "planning, this many repetitions (0: rescale the shipped "
                             "profiles by whole-model runs instead)")
    parser.add_argument("--fp16", action="store_true", help="upload cut tensors as float16")
    parser.add_argument("--replan-drift", type=float, default=0.25)
    parser.add_argument("--no-calibrate", action="store_true",
                        help="plan with the raw profiles instead of measured device/server speed")
    parser.add_argument("--tls-cert", help="connect with TLS, trusting only this server "
                                           "certificate (PEM; pinned)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    host, _, port = args.server.rpartition(":")
    try:
        if not host or not port.isdigit():
            raise ValueError(f"--server must be HOST:PORT, got {args.server!r}")
        jobs = parse_jobs(args.jobs)
        planner = make_planner(args.scheduler)
        token = protocol.read_token_file(args.token_file)
        tls = PinnedServerTls(args.tls_cert) if args.tls_cert else None
        client = OffloadClient((host, int(port)), token, [model for _, model in jobs],
                               args.bandwidth_mbps, args.latency_ms / 1e3, args.fp16,
                               not args.no_shaping, args.replan_drift,
                               calibrate=not args.no_calibrate, threads=args.threads,
                               profile_repetitions=args.profile_repetitions, tls=tls)
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="jobs", disable=args.quiet, file=sys.stderr)

    def progress(done: int) -> None:
        bar.update(done - bar.n)

    try:
        result = client.run(jobs, planner, seed=args.seed, progress=progress)
    except KeyboardInterrupt:
        parser.exit(130, "interrupted; no result written\n")
    finally:
        bar.close()
        client.close()
    document = result.to_dict()
    document.update({"scheduler": args.scheduler, "bandwidth_mbps": args.bandwidth_mbps,
                     "latency_ms": args.latency_ms, "fp16": args.fp16, "pid": os.getpid()})
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(document, indent=1))
    if not args.quiet:
        print_table(result)
    complete = all(job.output is not None for job in result.jobs)
    sys.exit(0 if complete else 1)


if __name__ == "__main__":
    main()
