"""``pipesched/ParamServer-v0``: place data blocks, then parameter shards, on machines."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.env_config import check_generator, check_render_mode, resolve_config
from envs.param_server.config import (
    SITEPACKAGES_PATH,
    GeneratorFn,
    ParamServerConfig,
    named_generator,
)
from envs.param_server.instance import Allocation, InstanceError, ParamServerInstance
from envs.param_server.simulator import AllocationState

MACHINE_FEATURES = ("valid", "fits", "speed", "bandwidth", "memory_free", "compute",
                    "comm", "machine_time", "time_if_placed", "iteration_if_placed",
                    "increase_if_placed", "affinity")
ITEM_FEATURES = ("is_block", "is_shard", "size", "accessors", "blocks_done", "shards_done",
                 "estimate", "machines")

OBS_LIMIT = 1.0e4  # features are ratios of order 1; the clip only guards the Box bounds


class ParamServerEnv(gym.Env):
    """Parameter-server allocation as a sequence of placement decisions.

    ## Description
    In bulk-synchronous data-parallel training every machine hosts a worker (data blocks) and
    a server (parameter shards). The agent places every data block, then every parameter
    shard, on a machine. The iteration-time model (``envs.param_server.simulator``) is:
    ``compute_s[m] = sum(block_nnz[b] on m) / speed_nnz_per_s[m]``; a worker pulls every shard
    its blocks touch (whole) and pushes a gradient of the same size back, so with
    ``R(s)`` = machines that touch ``s`` but do not own it,
    ``link_bytes[m] = sum(2*bytes[s] : m in R(s)) + sum(2*bytes[s]*|R(s)| : m owns s)`` and
    ``comm_s[m] = link_bytes[m] / bandwidth_bytes_per_s[m]``;
    ``iteration_s = max over m of compute_s[m] + comm_s[m]``;
    ``remote_bytes = sum(2*bytes[s]*|R(s)|)``. Memory: ``sum(block_bytes on m) +
    sum(shard_bytes owned by m) <= memory_bytes[m]``.

    Blocks are presented in decreasing non-zeros (ties by index); shards after all blocks, in
    decreasing ``bytes x number of machines that touch them`` (ties by index).

    ## Action Space
    ``Discrete(max_machines)``: the machine for the current item. Valid: ``a < M`` and the item
    fits in the machine's free memory. An invalid action is a penalised no-op (the item stays
    current) counted in ``info["invalid_actions"]``. Instances guarantee a machine with room
    at every step, so the mask is never all-false.

    ## Observation Space
    ``Dict`` of ``Box``:
    - ``machine_features`` ``(max_machines, 12)``: valid, fits, speed and bandwidth (over the
      mean), free memory fraction, compute_s, comm_s and machine_s (over the instance's
      ``time_scale_s``), this machine's time and the estimated iteration time if the item were
      placed here, the increase of the estimate, and the item's affinity to the machine
      (block: share of its shards' bytes the machine already touches or owns; shard: share of
      its accessing blocks on the machine). Padding rows are zero.
    - ``item_features`` ``(8,)``: is_block, is_shard, size (block non-zeros or shard bytes over
      the mean), machines touching it (shard, over M), fraction of blocks and of shards
      placed, current estimate over ``time_scale_s``, ``M / max_machines``.
    - ``action_mask`` ``(max_machines,)``: 1 for valid actions.

    ## Rewards
    Weighted terms (``config.reward_weights``): ``iteration_increase`` times
    ``-(estimate_after - estimate_before) / time_scale_s``, where the estimate is the
    simulator's partial-allocation estimate (placed items exact, an unplaced shard touched by
    ``k >= 2`` machines charging ``2*bytes`` to each); it never decreases and equals
    ``iteration_s`` at the end, so the undiscounted return is ``-iteration_s / time_scale_s``.
    ``invalid_action`` times ``-invalid_action_penalty`` for an invalid action.

    ## Starting State
    An instance from the injected generator (``self.np_random``), or
    ``options={"instance": inst}``; nothing placed.

    ## Episode End
    Terminated when every block and shard is placed; truncated after
    ``config.max_invalid_actions`` invalid actions. The final ``info`` holds
    ``iteration_s``, ``remote_bytes``, ``invalid_actions``, ``machine_s``, ``allocation``
    (``block_machine``, ``shard_machine``) and ``complete``.

    ## Arguments
    ``ParamServerEnv(config=None, *, generator=None, render_mode=None, **overrides)``:
    - ``config``: a :class:`envs.param_server.config.ParamServerConfig` (default
      ``ParamServerConfig()``); ``overrides`` replace its fields by name (``generator_name``
      "zipf" and ``generator_kwargs`` for :func:`named_generator`, ``max_machines`` 16,
      ``reward_weights``, ``invalid_action_penalty``, ``max_invalid_actions``); an unknown
      name is refused.
    - ``generator``: a callable ``rng -> ParamServerInstance`` that replaces the config's
      named one; a name (``generator="mixed"``, as YAML configs write it) is the
      ``generator_name`` override.
    - ``render_mode``: ``"ansi"`` returns a text Gantt chart of per-machine time.

    ## Version History
    - v0: first version.
    - v0 (same dynamics): settings moved into the frozen ``ParamServerConfig`` with keyword overrides.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, config: ParamServerConfig | None = None, *,
                 generator: GeneratorFn | str | None = None, render_mode: str | None = None,
                 **overrides: Any) -> None:
        if isinstance(generator, str):  # the old spelling of the generator_name override
            if "generator_name" in overrides:
                raise ValueError(f"ParamServerEnv: generator={generator!r} and generator_name="
                                 f"{overrides['generator_name']!r} both name the generator")
            overrides = {**overrides, "generator_name": generator}
            generator = None
        self.config = resolve_config(ParamServerConfig, config, overrides)
        check_generator(type(self).__name__, generator)
        if generator is not None and self.config.generator_kwargs:
            raise ValueError(f"ParamServerEnv: generator_kwargs "
                             f"{sorted(self.config.generator_kwargs)} only apply to a named "
                             f"generator, not to an injected {type(generator).__name__}")
        check_render_mode(type(self).__name__, self.metadata["render_modes"], render_mode)
        self.render_mode = render_mode
        self.generator = generator if generator is not None else self.config.default_generator()
        self.max_machines = self.config.max_machines
        self.action_space = spaces.Discrete(self.max_machines)
        self.observation_space = spaces.Dict({
            "machine_features": spaces.Box(-OBS_LIMIT, OBS_LIMIT, (self.max_machines,
                                                                   len(MACHINE_FEATURES)),
                                           np.float32),
            "item_features": spaces.Box(-OBS_LIMIT, OBS_LIMIT, (len(ITEM_FEATURES),),
                                        np.float32),
            "action_mask": spaces.Box(0.0, 1.0, (self.max_machines,), np.float32),
        })
        self.instance: ParamServerInstance | None = None
        self.state: AllocationState | None = None

    # gym API ---------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        instance = (options or {}).get("instance")
        if instance is None:
            instance = self.generator(self.np_random)
        if not isinstance(instance, ParamServerInstance):
            raise InstanceError(f"options['instance'] must be a ParamServerInstance, got "
                                f"{type(instance).__name__}")
        if instance.num_machines > self.max_machines:
            raise InstanceError(f"instance {instance.name!r} has {instance.num_machines} "
                                f"machines; this env pads to max_machines={self.max_machines}")
        self.instance = instance
        self.state = AllocationState(instance)
        self._block_order = np.lexsort((np.arange(instance.num_blocks), -instance.block_nnz))
        self._shard_order: np.ndarray | None = None
        self._step_index = 0
        self.invalid_actions = 0
        self._shard_accessors = np.bincount(instance.edge_shard, minlength=instance.num_shards)
        self._prepare_item()
        return self._observation(), self._info()

    def step(self, action: int):
        assert self.state is not None and self.instance is not None, "call reset() first"
        action = int(action)
        weights = self.config.reward_weights
        mask = self._mask
        if not (0 <= action < self.max_machines) or not mask[action]:
            self.invalid_actions += 1
            reward = -weights["invalid_action"] * self.config.invalid_action_penalty
            truncated = self.invalid_actions >= self.config.max_invalid_actions
            return self._observation(), float(reward), False, truncated, self._info()
        before = self.state.estimated_iteration_s
        kind, index = self.current_item
        if kind == "block":
            self.state.place_block(index, action)
        else:
            self.state.place_shard(index, action)
        self._step_index += 1
        terminated = self._step_index == self.instance.num_blocks + self.instance.num_shards
        increase = self.state.estimated_iteration_s - before
        reward = -weights["iteration_increase"] * increase / self.instance.time_scale_s
        if not terminated:
            self._prepare_item()
        return self._observation(), float(reward), terminated, False, self._info(terminated)

    def action_masks(self) -> np.ndarray:
        return self._mask.copy()

    # items -----------------------------------------------------------------------------------
    @property
    def current_item(self) -> tuple[str, int]:
        """``("block", b)`` or ``("shard", s)``: what the next action places."""
        num_blocks = self.instance.num_blocks
        if self._step_index < num_blocks:
            return "block", int(self._block_order[self._step_index])
        if self._shard_order is None:
            accessors = (self.state.access_count > 0).sum(axis=1)
            self._shard_order = np.lexsort((np.arange(self.instance.num_shards),
                                            -self.instance.shard_bytes * accessors))
        return "shard", int(self._shard_order[self._step_index - num_blocks])

    def _prepare_item(self) -> None:
        """Per-machine what-if times and the mask for the current item (cached for the step)."""
        kind, index = self.current_item
        num_machines = self.instance.num_machines
        if kind == "block":
            self._rows = self.state.block_machine_s(index)
            fits = self.state.block_fits(index)
        else:
            self._rows = self.state.shard_machine_s(index)
            fits = self.state.shard_fits(index)
        self._mask = np.zeros(self.max_machines, dtype=bool)
        self._mask[:num_machines] = fits
        if not self._mask.any():  # unreachable for validated instances; keep the contract
            raise InstanceError(f"instance {self.instance.name!r}: no machine has room for "
                                f"{kind} {index}")

    def _affinity(self, kind: str, index: int) -> np.ndarray:
        state, instance = self.state, self.instance
        if kind == "block":
            shards = instance.block_shards[index]
            weights = instance.shard_bytes[shards].astype(float)
            near = (state.access_count[shards] > 0) | (
                state.shard_machine[shards][:, None] == np.arange(instance.num_machines))
            return weights @ near / max(weights.sum(), 1.0)
        counts = state.access_count[index].astype(float)
        return counts / max(counts.sum(), 1.0)

    # observation / info ----------------------------------------------------------------------
    def _observation(self) -> dict[str, np.ndarray]:
        instance, state = self.instance, self.state
        num_machines, scale = instance.num_machines, instance.time_scale_s
        kind, index = self.current_item if not self._done else ("shard", 0)
        machines = np.zeros((self.max_machines, len(MACHINE_FEATURES)), dtype=np.float32)
        estimate = state.estimated_iteration_s
        rows = self._rows
        table = np.stack([
            np.ones(num_machines), self._mask[:num_machines],
            instance.speed_nnz_per_s / instance.speed_nnz_per_s.mean(),
            instance.bandwidth_bytes_per_s / instance.bandwidth_bytes_per_s.mean(),
            1.0 - state.memory_used / instance.memory_bytes,
            state.compute_s / scale, (state.machine_s - state.compute_s) / scale,
            state.machine_s / scale, np.diag(rows) / scale, rows.max(axis=1) / scale,
            (rows.max(axis=1) - estimate) / scale, self._affinity(kind, index),
        ], axis=1)
        machines[:num_machines] = table
        if kind == "block":
            size = instance.block_nnz[index] / instance.block_nnz.mean()
            accessors = 0.0
        else:
            size = instance.shard_bytes[index] / instance.shard_bytes.mean()
            accessors = np.count_nonzero(state.access_count[index]) / num_machines
        item = np.array([
            kind == "block", kind == "shard", size, accessors,
            min(self._step_index, instance.num_blocks) / instance.num_blocks,
            max(self._step_index - instance.num_blocks, 0) / instance.num_shards,
            estimate / scale, num_machines / self.max_machines,
        ], dtype=np.float32)
        return {"machine_features": np.clip(machines, -OBS_LIMIT, OBS_LIMIT),
                "item_features": np.clip(item, -OBS_LIMIT, OBS_LIMIT),
                "action_mask": self._mask.astype(np.float32)}

    @property
    def _done(self) -> bool:
        return self._step_index >= self.instance.num_blocks + self.instance.num_shards

    def _info(self, final: bool = False) -> dict[str, Any]:
        state = self.state
        info: dict[str, Any] = {
            "action_mask": self._mask.copy(), "invalid_actions": self.invalid_actions,
            "estimated_iteration_s": state.estimated_iteration_s,
        }
        if final:
            allocation = state.allocation()
            info.update({
                "iteration_s": state.estimated_iteration_s, "remote_bytes": state.remote_bytes,
                "machine_s": state.machine_s.tolist(), "complete": True,
                "allocation": allocation.to_dict(), "instance_name": self.instance.name,
            })
        elif self.invalid_actions >= self.config.max_invalid_actions:
            info.update({"iteration_s": state.estimated_iteration_s,
                         "remote_bytes": state.remote_bytes, "complete": False})
        return info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.state is None:
            return None
        return gantt_text(self.state.compute_s, self.state.machine_s - self.state.compute_s)


def gantt_text(compute_s: np.ndarray, comm_s: np.ndarray, width: int = 60) -> str:
    """One bar per machine: ``#`` compute, ``~`` link time; the longest bar is the iteration."""
    total = compute_s + comm_s
    longest = max(float(total.max()), 1e-12)
    lines = [f"iteration {longest * 1e3:.3f} ms  (# compute, ~ network)"]
    for machine, (compute, comm) in enumerate(zip(compute_s, comm_s, strict=True)):
        hashes = int(round(width * compute / longest))
        tildes = int(round(width * (compute + comm) / longest)) - hashes
        lines.append(f"m{machine:<3d}|{'#' * hashes}{'~' * tildes}{' ' * (width - hashes - tildes)}"
                     f"| {(compute + comm) * 1e3:.3f} ms")
    return "\n".join(lines)


def play_allocation(env: ParamServerEnv, allocation: Allocation,
                    instance: ParamServerInstance) -> dict[str, Any]:
    """Replay a planner's allocation through the env's decision order; the final info."""
    env.reset(options={"instance": instance})
    while True:
        kind, index = env.current_item
        machine = (allocation.block_machine if kind == "block" else allocation.shard_machine)[index]
        _, _, terminated, truncated, info = env.step(int(machine))
        if terminated or truncated:
            return info


__all__ = ["SITEPACKAGES_PATH", "ParamServerEnv", "gantt_text", "named_generator",
           "play_allocation"]
