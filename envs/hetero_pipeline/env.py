"""``pipesched/HeteroPipeline-v0``: group devices into pipeline stages, then place the cuts."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.env_config import check_generator, check_render_mode, resolve_config
from envs.hetero_pipeline.closed_form import estimate_iteration_s
from envs.hetero_pipeline.config import HeteroPipelineConfig
from envs.hetero_pipeline.generator import single_device_memory_bytes
from envs.hetero_pipeline.instance import InstanceError, PipelineInstance, PipelinePlan
from envs.hetero_pipeline.partition import minmax_cuts, single_device_plan, stage_time_matrix
from envs.hetero_pipeline.simulator import render_gantt, simulate

FEATURE_LIMIT = 100.0


class HeteroPipelineEnv(gym.Env):
    """Plan pipeline-parallel training over heterogeneous devices.

    ## Description
    An instance (see :mod:`envs.hetero_pipeline.instance`) has ``K`` devices (speed, memory,
    link bandwidth) and a per-layer training profile. A plan is an ordered list of stages,
    each a group of devices (data-parallel inside the stage, micro-batches split by speed)
    holding a contiguous layer range. Its time per iteration is the exact 1F1B event
    simulation of :mod:`envs.hetero_pipeline.simulator`. Episodes have two phases:
    1. *assign*: devices are visited fastest first; each joins an open stage, opens a new stage
       at any position of the pipeline (before stage ``p`` or at the end), or stays idle;
    2. *cut*: for stages ``0..S-2`` in order, choose the last layer of the stage (the last
       stage takes the rest).

    ## Action Space
    ``Discrete(max(2 * max_devices + 1, max_layers))``. Assign phase: ``a < max_devices``
    joins stage ``a``; ``max_devices + p`` opens a new stage at position ``p`` (``p`` = number
    of open stages appends it); ``2 * max_devices`` leaves the device idle. Cut phase: ``a``
    ends the current stage after layer ``a``. ``action_masks()``
    (and ``info["action_mask"]``) allow only actions after which a memory-feasible completion
    is known to exist (memory per device as in the simulator): while assigning, one of the
    reference completions of ``_completable`` (rest idle / rest as own stages at the end /
    at the front / one of them alone at the end) must admit feasible cuts; while cutting, a
    reachability DP over cut positions. The mask is therefore never all-false. It is conservative: on
    memory-tight instances a few feasible plans are not reachable.

    ## Observation Space
    ``Dict`` of ``Box`` (float32, padded, clipped to ``[-1, 100]``):
    ``devices (max_devices, 6)``: speed / fastest, memory / whole-model need, link
    bandwidth / 1000 Mbps, assigned, idle, is current; ``device_stage (max_devices,
    max_devices)``: one-hot stage; ``device_valid (max_devices,)``;
    ``layers (max_layers, 5)``: (F+B) / total, F / total, activation / max activation,
    params / total, stash / total; ``layer_stage (max_layers,)``: (stage+1)/max_devices once
    placed, else 0; ``layer_valid (max_layers,)``;
    ``stages (max_devices, 5)``: open, speed sum / total speed, members / K, min bandwidth /
    1000 Mbps, start layer / L; ``progress (4,)``: phase, current device / K, current cut
    stage / S, micro-batches / 16.

    ## Rewards
    Potential-based: the potential of a state is the simulated iteration time of its completion
    by the min-max layer DP (undecided devices idle, or else the first reference completion
    of the mask that fits). Each step earns
    ``-w_iteration_time * (potential_after - potential_before) / reference_s`` (``reference_s``
    = the best single-device plan's time, also the potential before any device is placed), so
    an episode's return is ``(reference_s - iteration_s) / reference_s`` minus
    ``w_invalid_action`` per invalid action.

    ## Starting State
    A fresh instance from the generator (or ``options["instance"]``), nothing assigned.

    ## Episode End
    Terminated when the last cut is placed (or after the last device when only one stage is
    open). Truncated after ``max_steps_factor * (max_devices + max_layers)`` steps; the plan is
    then completed by the DP. The final ``info`` holds ``iteration_s`` (simulated),
    ``closed_form_s``, ``fits_memory``, ``plan``, ``invalid_actions`` and ``complete`` (False
    after a truncation: the plan is then the DP's completion, not the scheduler's).

    ## Arguments
    ``HeteroPipelineEnv(config=None, *, generator=None, render_mode=None, **overrides)``:
    ``config`` a :class:`envs.hetero_pipeline.config.HeteroPipelineConfig` (default
    ``HeteroPipelineConfig()``) whose fields ``overrides`` replace by name (``max_devices`` 8,
    ``max_layers`` 12, ``reward_weights``, ``max_steps_factor`` 4; an unknown name is
    refused); ``generator`` a callable ``rng -> PipelineInstance`` that replaces the config's
    :class:`HeteroPipelineGenerator`; ``render_mode`` ``"ansi"`` or ``None``.

    ## Version History
    - v0: initial version.
    - v0 (same dynamics): settings moved into the frozen ``HeteroPipelineConfig`` with keyword overrides.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, config: HeteroPipelineConfig | None = None, *, generator: Any = None,
                 render_mode: str | None = None, **overrides: Any) -> None:
        self.config = resolve_config(HeteroPipelineConfig, config, overrides)
        check_generator(type(self).__name__, generator)
        check_render_mode(type(self).__name__, self.metadata["render_modes"], render_mode)
        self.render_mode = render_mode
        self.generator = generator if generator is not None else self.config.default_generator()
        self.max_devices, self.max_layers = self.config.max_devices, self.config.max_layers
        self.new_stage_action = self.max_devices  # + position
        self.idle_action = 2 * self.max_devices
        self.action_space = spaces.Discrete(max(2 * self.max_devices + 1, self.max_layers))
        D, L = self.max_devices, self.max_layers

        def box(*shape: int) -> spaces.Box:
            return spaces.Box(-1.0, FEATURE_LIMIT, shape=shape, dtype=np.float32)

        self.observation_space = spaces.Dict({
            "devices": box(D, 6), "device_stage": box(D, D), "device_valid": box(D),
            "layers": box(L, 5), "layer_stage": box(L), "layer_valid": box(L),
            "stages": box(D, 5), "progress": box(4),
        })
        self.instance: PipelineInstance | None = None

    # ----------------------------------------------------------------- episode state
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        instance = (options or {}).get("instance")
        self.instance = instance if instance is not None else self.generator(self.np_random)
        if not isinstance(self.instance, PipelineInstance):
            raise InstanceError("options['instance'] must be a PipelineInstance")
        if self.instance.num_devices > self.max_devices:
            raise InstanceError(f"instance has {self.instance.num_devices} devices, the env "
                                f"was built for max_devices={self.max_devices}")
        if self.instance.num_layers > self.max_layers:
            raise InstanceError(f"instance has {self.instance.num_layers} layers, the env "
                                f"was built for max_layers={self.max_layers}")
        inst = self.instance
        self.order = [int(d) for d in np.argsort(-inst.speeds, kind="stable")]
        self.stage_of = [-2] * inst.num_devices  # -2 undecided, -1 idle, s >= 0 stage
        self.groups: list[list[int]] = []
        self.cursor = 0              # index into self.order during the assign phase
        self.cuts: list[int] = [0]   # fixed cuts during the cut phase
        self.phase = "assign"
        self.invalid_actions = 0
        self.steps = 0
        self.final_plan: PipelinePlan | None = None
        self.reference_s = simulate(inst, single_device_plan(inst)).iteration_s
        self.potential_s = self.reference_s
        self._need = single_device_memory_bytes(inst.model, inst.memory_factor)
        self._matrices: dict[tuple, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self._mask = self._compute_mask()
        return self._observation(), self._info()

    def _groups_tuple(self, groups: list[list[int]] | None = None) -> tuple:
        return tuple(tuple(sorted(g)) for g in (self.groups if groups is None else groups))

    def _stage_matrices(self, groups: tuple) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if groups not in self._matrices:
            self._matrices[groups] = stage_time_matrix(self.instance, groups)
        return self._matrices[groups]

    def _completion_cuts(self, groups: tuple, fixed: list[int]) -> list[int] | None:
        """Min-max DP cuts for ``groups`` given the first ``len(fixed)-1`` stages' cuts."""
        stage, link = self._stage_matrices(groups)
        stage = list(stage)
        for s in range(len(fixed) - 1):
            forced = np.full_like(stage[s], np.inf)
            forced[fixed[s], fixed[s + 1]] = stage[s][fixed[s], fixed[s + 1]]
            stage[s] = forced
        if len(fixed) - 1 < len(groups):  # the next stage starts where the fixed ones end
            start = fixed[-1]
            rows = np.full_like(stage[len(fixed) - 1], np.inf)
            rows[start] = stage[len(fixed) - 1][start]
            stage[len(fixed) - 1] = rows
        return minmax_cuts(stage, link)

    def _feasible(self, groups: tuple, fixed: list[int]) -> bool:
        """Is there a memory-feasible cut vector extending ``fixed``? (reachability DP)"""
        if not groups or len(groups) > self.instance.num_layers:
            return False
        stage, _ = self._stage_matrices(groups)
        for s in range(len(fixed) - 1):
            if not np.isfinite(stage[s][fixed[s], fixed[s + 1]]):
                return False
        reach = np.zeros(self.instance.num_layers + 1, dtype=bool)
        reach[fixed[-1]] = True
        for s in range(len(fixed) - 1, len(groups)):
            reach = np.any(reach[:, None] & np.isfinite(stage[s]), axis=0)
        return bool(reach[-1])

    def _completable(self, groups: list[list[int]], remaining: list[int]) -> bool:
        """Does one of the reference completions of ``groups`` fit in memory?

        The remaining devices (a) all stay idle, (b) each open a stage at the end, (c) each
        open a stage at the front (each before the previous one), or (d) one of them opens a
        stage at the end and the others stay idle. Following a completion keeps it (or its
        remainder) in this family, so a state that passes has a valid action, and the mask
        is never all-false.
        """
        groups = [list(g) for g in groups]
        completions = [groups, groups + [[d] for d in remaining],
                       [[d] for d in reversed(remaining)] + groups]
        completions += [groups + [[d]] for d in remaining]
        return any(self._feasible(self._groups_tuple(c), [0]) for c in completions if c)

    def _num_stages(self) -> int:
        return len(self.groups)

    def _compute_mask(self) -> np.ndarray:
        mask = np.zeros(self.action_space.n, dtype=bool)
        inst = self.instance
        if self.phase == "assign":
            device = self.order[self.cursor]
            remaining = self.order[self.cursor + 1:]
            for s in range(len(self.groups)):
                trial = [list(g) for g in self.groups]
                trial[s].append(device)
                mask[s] = self._completable(trial, remaining)
            if len(self.groups) < min(self.max_devices, inst.num_layers):
                for position in range(len(self.groups) + 1):
                    trial = [list(g) for g in self.groups]
                    trial.insert(position, [device])
                    mask[self.new_stage_action + position] = self._completable(trial, remaining)
            mask[self.idle_action] = self._completable(self.groups, remaining)
        else:
            s = len(self.cuts) - 1
            S, L = self._num_stages(), inst.num_layers
            groups = self._groups_tuple()
            for stop in range(self.cuts[-1] + 1, L - (S - 1 - s) + 1):
                mask[stop - 1] = self._feasible(groups, self.cuts + [stop])
        if not mask.any():  # unreachable when the invariant holds; never hand out all-false
            raise InstanceError("no feasible action: the instance has no memory-feasible plan")
        return mask

    def action_masks(self) -> np.ndarray:
        return self._mask.copy()

    # ----------------------------------------------------------------- stepping
    def _completed_plan(self) -> PipelinePlan | None:
        """The state completed by the DP: the first reference completion that fits."""
        if self.phase == "assign":
            remaining = self.order[self.cursor:]
            candidates = [self.groups, self.groups + [[d] for d in remaining],
                          [[d] for d in reversed(remaining)] + self.groups]
            candidates += [self.groups + [[d]] for d in remaining]
        else:
            candidates = [self.groups]
        for candidate in candidates:
            groups = self._groups_tuple(candidate)
            if groups and len(groups) <= self.instance.num_layers:
                cuts = self._completion_cuts(groups, self.cuts)
                if cuts is not None:
                    return PipelinePlan.from_groups(groups, cuts)
        return None

    def _apply(self, action: int) -> None:
        if self.phase == "assign":
            device = self.order[self.cursor]
            if action < self.max_devices:
                self.groups[action].append(device)
            elif action < self.idle_action:
                self.groups.insert(action - self.new_stage_action, [device])
            self.stage_of[device] = -1
            for s, group in enumerate(self.groups):
                for member in group:
                    self.stage_of[member] = s
            self.cursor += 1
            if self.cursor == self.instance.num_devices:
                self.phase = "cut"
        else:
            self.cuts.append(action + 1)
        if self.phase == "cut" and len(self.cuts) == self._num_stages():
            self.cuts.append(self.instance.num_layers)
            self.phase = "done"

    def step(self, action: int):
        action = int(action)
        self.steps += 1
        weights = self.config.reward_weights
        reward = 0.0
        if 0 <= action < self.action_space.n and self._mask[action]:
            self._apply(action)
            plan = self._completed_plan()
            new_potential = (simulate(self.instance, plan).iteration_s if plan is not None
                             else self.reference_s)
            reward -= weights["iteration_time"] * (new_potential - self.potential_s) \
                / self.reference_s
            self.potential_s = new_potential
        else:
            self.invalid_actions += 1
            reward -= weights["invalid_action"]
        terminated = self.phase == "done"
        limit = self.config.max_steps_factor * (self.max_devices + self.max_layers)
        truncated = not terminated and self.steps >= limit
        if not (terminated or truncated):
            self._mask = self._compute_mask()
            return self._observation(), float(reward), False, False, self._info()
        plan = self._completed_plan()
        self.final_plan = plan or single_device_plan(self.instance)
        # a truncated episode's plan is the DP's completion, not the scheduler's
        complete = terminated and plan is not None
        return (self._observation(), float(reward), terminated, truncated,
                {**self._info(), "complete": complete})

    # ----------------------------------------------------------------- views
    def _observation(self) -> dict[str, np.ndarray]:
        inst = self.instance
        D, L = self.max_devices, self.max_layers
        K, S = inst.num_devices, self._num_stages()
        devices = np.zeros((D, 6), np.float32)
        device_stage = np.zeros((D, D), np.float32)
        current = self.order[self.cursor] if self.phase == "assign" else -1
        for d in range(K):
            # a model that needs no memory fits anywhere: the ratio's ceiling, not inf
            fits = (inst.memories[d] / self._need if self._need > 0 else FEATURE_LIMIT)
            devices[d] = [inst.speeds[d] / inst.speeds.max(), fits,
                          inst.devices[d].bandwidth_mbps / 1000.0, self.stage_of[d] >= 0,
                          self.stage_of[d] == -1, d == current]
            if self.stage_of[d] >= 0:
                device_stage[d, self.stage_of[d]] = 1.0
        model = inst.model
        work = model.forward_prefix_s[-1] + model.backward_prefix_s[-1]
        layers = np.zeros((L, 5), np.float32)
        for index, layer in enumerate(model.layers):
            layers[index] = [
                (layer.forward_s + layer.backward_s) / max(work, 1e-12),
                layer.forward_s / max(work, 1e-12),
                layer.activation_bytes / max(model.activation_bytes.max(), 1.0),
                layer.param_bytes / max(model.param_prefix_bytes[-1], 1.0),
                layer.stash_bytes / max(model.stash_prefix_bytes[-1], 1.0)]
        layer_stage = np.zeros(L, np.float32)
        for s in range(len(self.cuts) - 1):
            layer_stage[self.cuts[s]:self.cuts[s + 1]] = (s + 1) / D
        stages = np.zeros((D, 5), np.float32)
        for s, group in enumerate(self.groups):
            stages[s] = [1.0, inst.speeds[group].sum() / inst.speeds.sum(), len(group) / K,
                         min(inst.devices[d].bandwidth_mbps for d in group) / 1000.0,
                         self.cuts[s] / inst.num_layers if s < len(self.cuts) else 0.0]
        progress = np.array([self.phase != "assign", self.cursor / K,
                             (len(self.cuts) - 1) / max(S, 1),
                             inst.num_microbatches / 16.0], np.float32)
        observation = {
            "devices": devices, "device_stage": device_stage,
            "device_valid": (np.arange(D) < K).astype(np.float32),
            "layers": layers, "layer_stage": layer_stage,
            "layer_valid": (np.arange(L) < inst.num_layers).astype(np.float32),
            "stages": stages, "progress": progress,
        }
        return {key: np.clip(value, -1.0, FEATURE_LIMIT).astype(np.float32)
                for key, value in observation.items()}

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"action_mask": self._mask.copy(),
                                "invalid_actions": self.invalid_actions, "phase": self.phase,
                                "reference_s": self.reference_s}
        if self.final_plan is not None:
            result = simulate(self.instance, self.final_plan)
            info.update(iteration_s=result.iteration_s, fits_memory=result.fits_memory,
                        closed_form_s=estimate_iteration_s(self.instance, self.final_plan),
                        bubble_fraction=result.bubble_fraction,
                        plan=self.final_plan.to_dict())
        return info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.instance is None:
            return None
        if self.final_plan is not None:
            return render_gantt(self.instance, self.final_plan)
        lines = [f"phase {self.phase}; stages " + "; ".join(
            f"{s}: dev{g}" for s, g in enumerate(self.groups)) + f"; cuts {self.cuts}"]
        plan = self._completed_plan()
        if plan is not None:
            lines.append("DP completion:")
            lines.append(render_gantt(self.instance, plan))
        return "\n".join(lines)
