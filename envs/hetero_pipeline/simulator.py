"""The one timing model of a pipeline plan: per-stage costs and the exact 1F1B event simulation.

Stage ``s`` (pipeline order, ``S`` stages, ``M`` micro-batches) holds layers
``c_s..c_{s+1}-1`` and devices ``G_s``; its members split every micro-batch in proportion to
their speed (share ``p_i = v_i / V_s``, ``V_s = sum of speeds in G_s``), so all members finish
a micro-batch together:

    F_s = sum(forward_s of its layers) / V_s        B_s = sum(backward_s) / V_s
    X_s = latency_s + a_s * max(k_s, k_{s+1})       (boundary s -> s+1; same for the gradient)
          a_s = activation_bytes of layer c_{s+1}-1;  k_g = max_{i in G_g} p_i / bw_i
          (every member sends / receives its share over its own link, in parallel)
    R_s = 2 (n_s - 1) (latency_s + P_s / (n_s * min_{i in G_s} bw_i))   ring all-reduce, n_s >= 2
          P_s = parameter bytes of the stage;  R_s = 0 for a one-device stage
    mem_i = memory_factor * P_s + min(S - s, M) * p_i * stash_s   <=  memory_bytes_i

Schedule (1F1B, PipeDream-Flush): stage ``s`` runs ``w_s = min(S-s-1, M)`` warm-up forwards,
then alternates one forward and one backward, then drains the remaining backwards. An op
starts when the stage has finished its previous op and its input is there: ``F(s,m)`` needs
the activation of micro-batch ``m`` from stage ``s-1``, ``B(s,m)`` the gradient from stage
``s+1`` (the last stage's ``B`` follows its own ``F``). Each boundary has one FIFO channel per
direction; a transfer starts when its producer op ends and the channel is free, and sending
does not block the stage's compute. When stage ``s`` ends its last backward it all-reduces its
gradients (``R_s``). The iteration time is the latest all-reduce end. The optimizer step and
the loss are inside the profiled layer times; they are not modelled separately.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.hetero_pipeline.instance import InstanceError, PipelineInstance, PipelinePlan, validate_plan

Groups = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class GroupConstants:
    """What a stage's cost needs from its device group, independent of its layers."""

    speed_sum: np.ndarray        # (S,)
    per_byte_s: np.ndarray       # (S,) k_g = max_i p_i / bw_i
    size: np.ndarray             # (S,)
    min_bytes_per_s: np.ndarray  # (S,)
    shares: tuple[np.ndarray, ...]
    memories: tuple[np.ndarray, ...]


def group_constants(instance: PipelineInstance, groups: Groups) -> GroupConstants:
    speeds, bws, mems = instance.speeds, instance.bytes_per_s, instance.memories
    shares = tuple(speeds[list(g)] / speeds[list(g)].sum() for g in groups)
    return GroupConstants(
        speed_sum=np.array([speeds[list(g)].sum() for g in groups]),
        per_byte_s=np.array([np.max(p / bws[list(g)]) for p, g in zip(shares, groups, strict=True)]),
        size=np.array([len(g) for g in groups], dtype=float),
        min_bytes_per_s=np.array([bws[list(g)].min() for g in groups]),
        shares=shares, memories=tuple(mems[list(g)] for g in groups))


@dataclass(frozen=True)
class StageCosts:
    """Costs of ``N`` candidate cut vectors for one device grouping (arrays ``(N, S)``)."""

    forward_s: np.ndarray
    backward_s: np.ndarray
    transfer_s: np.ndarray        # (N, S-1): boundary s -> s+1, each direction
    allreduce_s: np.ndarray
    memory_excess_bytes: np.ndarray  # max over members of need - capacity (<= 0 fits)
    device_memory_bytes: tuple[np.ndarray, ...]  # per stage: (N, n_s) bytes needed

    @property
    def fits_memory(self) -> np.ndarray:
        return np.all(self.memory_excess_bytes <= 0, axis=1)


def inflight_microbatches(num_stages: int, num_microbatches: int) -> np.ndarray:
    """Micro-batches whose activations stage ``s`` holds at once under 1F1B."""
    return np.minimum(num_stages - np.arange(num_stages), num_microbatches).astype(float)


def stage_costs(instance: PipelineInstance, groups: Groups, cuts: np.ndarray,
                constants: GroupConstants | None = None) -> StageCosts:
    """Vectorised stage costs; ``cuts`` is ``(N, S+1)`` with ``cuts[:, 0] = 0``, ``[:, S] = L``."""
    cuts = np.atleast_2d(np.asarray(cuts, dtype=int))
    const = constants or group_constants(instance, groups)
    model = instance.model
    lo, hi = cuts[:, :-1], cuts[:, 1:]
    forward = (model.forward_prefix_s[hi] - model.forward_prefix_s[lo]) / const.speed_sum
    backward = (model.backward_prefix_s[hi] - model.backward_prefix_s[lo]) / const.speed_sum
    params = model.param_prefix_bytes[hi] - model.param_prefix_bytes[lo]
    stash = model.stash_prefix_bytes[hi] - model.stash_prefix_bytes[lo]
    boundary_bytes = model.activation_bytes[cuts[:, 1:-1] - 1]
    per_byte = np.maximum(const.per_byte_s[:-1], const.per_byte_s[1:])
    transfer = instance.latency_s + boundary_bytes * per_byte
    n = const.size
    with np.errstate(divide="ignore", invalid="ignore"):
        ring = 2 * (n - 1) * (instance.latency_s + params / (n * const.min_bytes_per_s))
    allreduce = np.where(n > 1, ring, 0.0)
    inflight = inflight_microbatches(len(groups), instance.num_microbatches)
    excess = np.empty_like(forward)
    per_device = []
    for s in range(len(groups)):
        need = (instance.memory_factor * params[:, s:s + 1]
                + inflight[s] * const.shares[s][None, :] * stash[:, s:s + 1])
        per_device.append(need)
        excess[:, s] = np.max(need - const.memories[s][None, :], axis=1)
    return StageCosts(forward, backward, transfer, allreduce, excess, tuple(per_device))


def plan_costs(instance: PipelineInstance, plan: PipelinePlan) -> StageCosts:
    validate_plan(instance, plan)
    return stage_costs(instance, plan.groups, np.array([plan.cuts]))


def one_f_one_b_order(stage: int, num_stages: int, num_microbatches: int) -> list[tuple[str, int]]:
    """The op order of ``stage`` under 1F1B: warm-up forwards, steady 1F1B, drain backwards."""
    warmup = min(num_stages - stage - 1, num_microbatches)
    ops = [("F", m) for m in range(warmup)]
    next_backward = 0
    for m in range(warmup, num_microbatches):
        ops.append(("F", m))
        ops.append(("B", next_backward))
        next_backward += 1
    ops.extend(("B", m) for m in range(next_backward, num_microbatches))
    return ops


@dataclass(frozen=True)
class Interval:
    resource: str   # "stage 0", "link 0>1", "link 1>0"
    kind: str       # "F", "B", "act", "grad", "allreduce"
    microbatch: int
    start_s: float
    end_s: float


@dataclass
class SimulationResult:
    iteration_s: float
    fits_memory: bool
    stage_end_s: list[float]
    device_memory_bytes: dict[int, float]
    trace: list[Interval] = field(default_factory=list)
    bubble_fraction: float = 0.0


def simulate(instance: PipelineInstance, plan: PipelinePlan, trace: bool = False
             ) -> SimulationResult:
    """Exact 1F1B event simulation of one training iteration of ``plan``."""
    costs = plan_costs(instance, plan)
    S, M = plan.num_stages, instance.num_microbatches
    forward, backward = costs.forward_s[0], costs.backward_s[0]
    transfer, allreduce = costs.transfer_s[0], costs.allreduce_s[0]
    orders = [one_f_one_b_order(s, S, M) for s in range(S)]
    position = [0] * S
    stage_free = [0.0] * S
    # act_arrival[s][m]: activation of m reaches stage s+1; grad_arrival[s][m]: gradient of m
    # reaches stage s from s+1.
    act_arrival = [[None] * M for _ in range(max(S - 1, 0))]
    grad_arrival = [[None] * M for _ in range(max(S - 1, 0))]
    fwd_channel_free = [0.0] * max(S - 1, 0)
    bwd_channel_free = [0.0] * max(S - 1, 0)
    forward_end = [[0.0] * M for _ in range(S)]
    intervals: list[Interval] = []
    remaining = sum(len(order) for order in orders)
    while remaining:
        progressed = False
        for s in range(S):
            while position[s] < len(orders[s]):
                kind, m = orders[s][position[s]]
                if kind == "F":
                    ready = 0.0 if s == 0 else act_arrival[s - 1][m]
                else:
                    ready = forward_end[s][m] if s == S - 1 else grad_arrival[s][m]
                if ready is None:
                    break
                start = max(stage_free[s], ready)
                end = start + (forward[s] if kind == "F" else backward[s])
                stage_free[s] = end
                if trace:
                    intervals.append(Interval(f"stage {s}", kind, m, start, end))
                if kind == "F":
                    forward_end[s][m] = end
                    if s < S - 1:
                        t0 = max(end, fwd_channel_free[s])
                        fwd_channel_free[s] = act_arrival[s][m] = t0 + transfer[s]
                        if trace:
                            intervals.append(Interval(f"link {s}>{s + 1}", "act", m, t0,
                                                      t0 + transfer[s]))
                elif s > 0:
                    t0 = max(end, bwd_channel_free[s - 1])
                    bwd_channel_free[s - 1] = grad_arrival[s - 1][m] = t0 + transfer[s - 1]
                    if trace:
                        intervals.append(Interval(f"link {s}>{s - 1}", "grad", m, t0,
                                                  t0 + transfer[s - 1]))
                position[s] += 1
                remaining -= 1
                progressed = True
        if not progressed:  # cannot happen for a valid 1F1B order; guards the loop
            raise InstanceError("1F1B simulation deadlocked")
    stage_end = [stage_free[s] + allreduce[s] for s in range(S)]
    if trace:
        intervals.extend(Interval(f"stage {s}", "allreduce", -1, stage_free[s], stage_end[s])
                         for s in range(S) if allreduce[s] > 0)
    iteration = max(stage_end)
    busy = M * (forward + backward)
    bubble = float(1.0 - busy.sum() / (S * iteration)) if iteration > 0 else 0.0
    memory = {int(d): float(costs.device_memory_bytes[s][0, j])
              for s, stage in enumerate(plan.stages) for j, d in enumerate(stage.devices)}
    return SimulationResult(iteration_s=float(iteration), fits_memory=bool(costs.fits_memory[0]),
                            stage_end_s=stage_end, device_memory_bytes=memory,
                            trace=intervals, bubble_fraction=bubble)


def iteration_time(instance: PipelineInstance, plan: PipelinePlan) -> float:
    """Simulated seconds per iteration; ``inf`` if the plan exceeds a device's memory."""
    result = simulate(instance, plan)
    return result.iteration_s if result.fits_memory else float("inf")


def total_work_lower_bound(instance: PipelineInstance) -> float:
    """No plan beats all compute spread over all devices: ``M * sum(F+B) / sum(speed)``."""
    model = instance.model
    work = model.forward_prefix_s[-1] + model.backward_prefix_s[-1]
    return float(instance.num_microbatches * work / instance.speeds.sum())


def render_gantt(instance: PipelineInstance, plan: PipelinePlan, width: int = 72) -> str:
    """Text Gantt of one iteration: one row per stage and per busy link direction."""
    result = simulate(instance, plan, trace=True)
    horizon = result.iteration_s or 1.0
    rows: dict[str, list[str]] = {}
    symbols = {"F": None, "B": None, "act": ">", "grad": "<", "allreduce": "#"}
    for interval in result.trace:
        row = rows.setdefault(interval.resource, [" "] * width)
        a = int(interval.start_s / horizon * width)
        b = max(a + 1, int(round(interval.end_s / horizon * width)))
        symbol = symbols[interval.kind]
        if symbol is None:
            symbol = str(interval.microbatch % 10) if interval.kind == "F" else \
                "abcdefghij"[interval.microbatch % 10]
        for x in range(a, min(b, width)):
            row[x] = symbol
    memory = "ok" if result.fits_memory else "EXCEEDED"
    lines = [f"iteration {result.iteration_s:.4f} s, memory {memory}  "
             "(F: digit = micro-batch, B: letter, > act, < grad, # all-reduce)"]
    for s, stage in enumerate(plan.stages):
        lines.append(f"stage {s} dev{list(stage.devices)} layers {stage.start}..{stage.stop - 1}")
    for name in sorted(rows, key=lambda r: (r.split()[0] != "stage", r)):
        lines.append(f"{name:>10} |{''.join(rows[name])}|")
    return "\n".join(lines)
