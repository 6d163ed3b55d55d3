"""``pipesched/DnnOffload-v0``: build an offloading plan one (job, cut) decision at a time."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.env_config import check_generator, check_render_mode, resolve_config
from envs.offload.bounds import latency_lower_bound
from envs.offload.config import OffloadConfig
from envs.offload.cuts import candidate_cuts
from envs.offload.generator import Generator
from envs.offload.instance import OffloadInstance
from envs.offload.render import ansi_gantt
from envs.offload.simulator import Plan, Timeline

CUT_FEATURES = ("device", "upload", "server", "latency", "done_if_next", "increase_if_next",
                "is_local", "is_server_only")
JOB_FEATURES = ("present", "pending", "min_latency", "local_time", "min_device", "min_offload")
#: times are in units of the lower bound, so even all-server at CAT1 stays far below this
FEATURE_MAX = 1e6
GLOBAL_FEATURES = ("device_free", "uplink_free", "server_free", "makespan", "pending_fraction",
                   "log_bandwidth")


class DnnOffloadEnv(gym.Env):
    """Offloading a batch of chain DNN inference jobs between a device and a server.

    ## Description
    A batch of inference jobs, all released at time 0, must run on one device, one uplink and
    one server. For each job the agent picks a cut ``c`` (layers ``1..c`` on the device, the
    rest on the server, the tensor at the cut uploaded in between) and, by the order of its
    decisions, the order in which the three resources serve the jobs. Timing follows
    :mod:`envs.offload.simulator` exactly (docs/offload.md, "Exact semantics"): each resource serves
    one job at a time in plan order and a job skips the resources its cut leaves idle.

    ## Action Space
    ``Discrete(max_jobs * max_cuts)``: action ``a`` schedules job ``a // max_cuts`` next with
    its candidate cut number ``a % max_cuts``. A job's candidates are its Pareto-efficient cuts
    in (device, upload, server) time (no optimal plan needs a dominated cut), thinned to
    ``max_cuts`` evenly if there are more; ``info["candidate_cuts"]`` lists them.

    ## Observation Space
    ``Dict`` of ``Box`` (all times divided by a lower bound on the makespan,
    :func:`envs.offload.bounds.latency_lower_bound`):
    - ``cut_features`` ``(max_jobs, max_cuts, 8)``: device, upload, server and total time of the
      cut; when the job would finish and by how much the makespan would grow if it were
      scheduled next; flags for all-local and all-server cuts.
    - ``cut_mask`` ``(max_jobs, max_cuts)``: 1 where the action is valid.
    - ``job_features`` ``(max_jobs, 6)``: present, pending, best latency, all-local time,
      smallest device time, smallest upload+server time.
    - ``job_mask`` ``(max_jobs,)``: 1 for pending jobs.
    - ``global_features`` ``(6,)``: when device, uplink and server are next free, the makespan
      so far, the pending fraction and ``log10`` of the bandwidth in Mbit/s.

    ## Rewards
    ``-reward_scale * (makespan after - makespan before) / lower_bound``, so an episode's return
    is ``-reward_scale * makespan / lower_bound``. An invalid action is a no-op with reward
    ``-invalid_penalty``.

    ## Starting State
    An instance from the injected generator (default: 2..``max_jobs`` jobs drawn from the
    shipped profiles, bandwidth from CAT1/3G/4G/WiFi or log-uniform in between), or
    ``options={"instance": inst}``. No job is scheduled.

    ## Episode End
    Terminates when every job is scheduled. Truncates after ``max_invalid_actions`` invalid
    actions; the remaining jobs are then appended all-local in index order so the final
    ``info`` still holds a complete plan and its makespan, with ``complete`` False: that plan
    is the env's fallback, not the scheduler's.

    The final ``info`` holds ``makespan_s``, ``plan`` (list of ``(job, cut)``),
    ``lower_bound_s``, ``invalid_actions``, ``action_mask`` and ``complete`` (True when the
    scheduler's own actions placed every job).

    ## Arguments
    ``DnnOffloadEnv(config=None, *, generator=None, render_mode=None, **overrides)``:
    ``config`` an :class:`envs.offload.config.OffloadConfig` (default ``OffloadConfig()``) whose
    fields ``overrides`` replace by name (``max_jobs`` 6, ``max_cuts`` 80, ``reward_scale``,
    ``invalid_penalty``, ``max_invalid_actions``; an unknown name is refused);
    ``generator`` a :class:`Generator` (``rng -> OffloadInstance``) that replaces the config's
    default; ``render_mode`` ``"ansi"`` or None.

    ## Version History
    - v0: chain jobs and DAG jobs (whose options are candidate predecessor-closed partitions,
      see :mod:`envs.offload.dag`), Pareto candidate cuts, lookahead features.
    - v0 (same dynamics): settings moved into the frozen ``OffloadConfig`` with keyword overrides.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, config: OffloadConfig | None = None, *, generator: Generator | None = None,
                 render_mode: str | None = None, **overrides: Any) -> None:
        self.config = resolve_config(OffloadConfig, config, overrides)
        check_generator(type(self).__name__, generator)
        check_render_mode(type(self).__name__, self.metadata["render_modes"], render_mode)
        self.render_mode = render_mode
        self.max_jobs, self.max_cuts = self.config.max_jobs, self.config.max_cuts
        max_jobs, max_cuts = self.max_jobs, self.max_cuts
        self.generator = generator if generator is not None else self.config.default_generator()
        self.action_space = spaces.Discrete(max_jobs * max_cuts)
        self.observation_space = spaces.Dict({
            "cut_features": spaces.Box(0.0, FEATURE_MAX, (max_jobs, max_cuts, len(CUT_FEATURES)),
                                       np.float32),
            "cut_mask": spaces.Box(0.0, 1.0, (max_jobs, max_cuts), np.float32),
            "job_features": spaces.Box(0.0, FEATURE_MAX, (max_jobs, len(JOB_FEATURES)), np.float32),
            "job_mask": spaces.Box(0.0, 1.0, (max_jobs,), np.float32),
            "global_features": spaces.Box(-FEATURE_MAX, FEATURE_MAX, (len(GLOBAL_FEATURES),),
                                          np.float32),
        })
        self.instance: OffloadInstance | None = None

    # --- episode -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        instance = (options or {}).get("instance") or self.generator(self.np_random)
        if instance.num_jobs > self.max_jobs:
            raise ValueError(f"instance has {instance.num_jobs} jobs but the env was built with "
                             f"max_jobs={self.max_jobs}")
        self.instance = instance
        self.lower_bound_s = latency_lower_bound(instance)
        self.timeline = Timeline(instance)
        self.plan: list[tuple[int, int]] = []
        self.invalid_actions = 0
        self.candidates = [candidate_cuts(instance, j, self.max_cuts)
                           for j in range(instance.num_jobs)]
        self._static = self._static_features()
        return self._observation(), self._info()

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        job, slot = divmod(int(action), self.max_cuts)
        mask = self.action_masks()
        if not 0 <= int(action) < self.action_space.n or not mask[int(action)]:
            self.invalid_actions += 1
            truncated = self.invalid_actions >= self.config.max_invalid_actions
            if truncated:
                self._finish_all_local()
            info = {**self._info(), "complete": False} if truncated else self._info()
            return (self._observation(), -self.config.invalid_penalty, False, truncated,
                    info)
        before_s = self.timeline.makespan_s
        cut = int(self.candidates[job][slot])
        self.timeline.add(job, cut)
        self.plan.append((job, cut))
        reward = (-self.config.reward_scale * (self.timeline.makespan_s - before_s)
                  / self.lower_bound_s)
        terminated = len(self.plan) == self.instance.num_jobs
        info = self._info()
        if terminated:
            info["complete"] = True
        return self._observation(), float(reward), terminated, False, info

    def _finish_all_local(self) -> None:
        for job in range(self.instance.num_jobs):
            if job not in self.timeline.job_done_s:
                cut = self.instance.jobs[job].local_cut
                self.timeline.add(job, cut)
                self.plan.append((job, cut))

    # --- masks, observation, info ----------------------------------------------------------
    def action_masks(self) -> np.ndarray:
        mask = np.zeros((self.max_jobs, self.max_cuts), dtype=bool)
        for job, cuts in enumerate(self.candidates):
            if job not in self.timeline.job_done_s:
                mask[job, : len(cuts)] = True
        if not mask.any():  # episode over: keep one action valid (never an all-false mask)
            mask[0, 0] = True
        return mask.reshape(-1)

    def _static_features(self) -> dict[str, np.ndarray]:
        scale = self.lower_bound_s
        cut_times = np.zeros((self.max_jobs, self.max_cuts, 3))
        offloads = np.zeros((self.max_jobs, self.max_cuts), dtype=bool)
        jobs = np.zeros((self.max_jobs, len(JOB_FEATURES)))
        for job, cuts in enumerate(self.candidates):
            device_s, upload_s, server_s = (t[cuts] for t in self.instance.cut_times(job))
            cut_times[job, : len(cuts)] = np.stack([device_s, upload_s, server_s], 1) / scale
            offloads[job, : len(cuts)] = cuts != self.instance.jobs[job].local_cut
            all_device_s, all_upload_s, all_server_s = self.instance.cut_times(job)
            jobs[job] = [1.0, 1.0, (all_device_s + all_upload_s + all_server_s).min() / scale,
                         all_device_s[-1] / scale, device_s.min() / scale,
                         (upload_s + server_s).min() / scale]
        return {"cut_times": cut_times, "offloads": offloads, "jobs": jobs}

    def _observation(self) -> dict[str, np.ndarray]:
        scale = self.lower_bound_s
        clock = self.timeline.clock
        dev, up, srv, makespan = (clock.device_free_s / scale, clock.uplink_free_s / scale,
                                  clock.server_free_s / scale, clock.makespan_s / scale)
        times = self._static["cut_times"]
        offloads = self._static["offloads"]
        device, upload, server = times[..., 0], times[..., 1], times[..., 2]
        device_done = np.where(device > 0, dev + device, 0.0)
        up_done = np.maximum(up, device_done) + upload
        done = np.where(offloads, np.maximum(srv, up_done) + server, device_done)
        mask = self.action_masks().reshape(self.max_jobs, self.max_cuts)
        if len(self.plan) == self.instance.num_jobs:
            mask[:] = False
        is_local = (~offloads) & (device > 0)
        cut_features = np.stack([device, upload, server, device + upload + server, done,
                                 np.maximum(done - makespan, 0.0), is_local,
                                 offloads & (device == 0)], axis=-1) * mask[..., None]
        jobs = self._static["jobs"].copy()
        pending = np.zeros(self.max_jobs)
        for job in range(self.instance.num_jobs):
            pending[job] = job not in self.timeline.job_done_s
        jobs[:, 1] = pending
        num_jobs = self.instance.num_jobs
        return {
            "cut_features": cut_features.astype(np.float32),
            "cut_mask": mask.astype(np.float32),
            "job_features": jobs.astype(np.float32),
            "job_mask": pending.astype(np.float32),
            "global_features": np.array(
                [dev, up, srv, makespan, pending[:num_jobs].mean(),
                 np.log10(self.instance.bandwidth_mbps)], dtype=np.float32),
        }

    def _info(self) -> dict[str, Any]:
        return {
            "action_mask": self.action_masks(),
            "makespan_s": self.timeline.makespan_s,
            "plan": list(self.plan),
            "lower_bound_s": self.lower_bound_s,
            "invalid_actions": self.invalid_actions,
            "candidate_cuts": [cuts.tolist() for cuts in self.candidates],
        }

    def action_for(self, job: int, cut: int) -> int:
        """The action that schedules ``job`` next at ``cut`` (or its closest candidate cut)."""
        candidates = self.candidates[job]
        slot = int(np.argmin(np.abs(candidates - cut)))
        return job * self.max_cuts + slot

    def final_plan(self) -> Plan:
        return Plan(tuple(self.plan))

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return ansi_gantt(self.instance, self.timeline.result())
        return None
