"""Layer-granularity timing model of offloading (used by the ``layer_level`` scheduler).

The job-level model (:mod:`envs.offload.simulator`) moves a job from one resource to the next
as a whole. Here the device runs individual layers, the uplink sends individual tensors and the
server runs individual layers, so one job's upload can overlap another job's (or its own later)
device layers. A :class:`LayerPlan` fixes each job's option (a predecessor-closed device set,
:mod:`envs.offload.dag`) and the order of the items on each resource:

- ``device_order``: ``(job, layer)`` for every device layer (layer = index in the job graph's
  topological order, :func:`envs.offload.dag.job_graph`);
- ``uplink_order``: ``(job, tensor)`` for every crossing tensor (``-1`` is the job input, else
  the producing layer), each sent once;
- ``server_order``: ``(job, layer)`` for every server layer.

Each resource serves its items one at a time in its list's order, each item as early as
possible::

    device layer v starts at max(device free, its parents' device finish)       takes d[v]
    tensor u starts at max(uplink free, u's device finish; 0 for the input)
             takes 8*bytes[u]/(bandwidth_mbps*1e6), plus latency_s for the first tensor of
             the job in uplink order (one request per job, as in the job-level model)
    server layer v starts at max(server free, for each parent: its server finish if it ran
             on the server, the upload finish of its tensor otherwise)             takes s[v]
    job finishes at its last layer's finish;  makespan = max over jobs

Every job-level plan expands (:func:`expand_plan`) into a layer plan whose makespan is at most
the job-level one (the layer model only drops waits); for chain jobs the two are equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.offload.dag import DagGraph, job_graph, option_mask
from envs.offload.instance import InstanceError, OffloadInstance
from envs.offload.simulator import Interval, PlanLike, as_plan

Item = tuple[int, int]


@dataclass(frozen=True)
class LayerPlan:
    options: tuple[int, ...]          # option of every job (index into its cut options)
    device_order: tuple[Item, ...]
    uplink_order: tuple[Item, ...]
    server_order: tuple[Item, ...]


@dataclass
class LayerResult:
    makespan_s: float
    job_done_s: dict[int, float]
    intervals: dict[str, list[Interval]] = field(default_factory=dict)


@dataclass
class JobParts:
    """One job's graph, device mask and the items each resource must serve."""

    graph: DagGraph
    mask: np.ndarray
    device: list[int]
    tensors: list[int]
    server: list[int]


def job_parts(instance: OffloadInstance, job: int, option: int) -> JobParts:
    graph = job_graph(instance.jobs[job])
    mask = option_mask(instance.jobs[job], option)
    return JobParts(graph, mask, [int(v) for v in np.flatnonzero(mask)],
                    [int(u) for u in graph.crossing(mask)],
                    [int(v) for v in np.flatnonzero(~mask)])


def tensor_seconds(instance: OffloadInstance, graph: DagGraph, tensor: int) -> float:
    size = graph.input_bytes if tensor < 0 else float(graph.output_bytes[tensor])
    return 8.0 * size / (instance.bandwidth_mbps * 1e6)


def _check_lists(parts: list[JobParts], plan: LayerPlan) -> None:
    for label, order, attribute in (("device_order", plan.device_order, "device"),
                                    ("uplink_order", plan.uplink_order, "tensors"),
                                    ("server_order", plan.server_order, "server")):
        wanted = sorted((j, v) for j, p in enumerate(parts) for v in getattr(p, attribute))
        if sorted(order) != wanted:
            missing = sorted(set(wanted) - set(order))[:3]
            extra = sorted(set(order) - set(wanted))[:3]
            raise InstanceError(f"layer plan {label}: missing {missing}, unexpected {extra} "
                                f"(or repeated items)")


def simulate_layers(instance: OffloadInstance, plan: LayerPlan) -> LayerResult:
    """Makespan and busy intervals of ``plan`` under the rules of the module docstring."""
    if len(plan.options) != instance.num_jobs:
        raise InstanceError(f"layer plan has {len(plan.options)} options for "
                            f"{instance.num_jobs} jobs")
    parts = [job_parts(instance, j, int(option)) for j, option in enumerate(plan.options)]
    _check_lists(parts, plan)
    device_done: dict[Item, float] = {}
    upload_done: dict[Item, float] = {}
    server_done: dict[Item, float] = {}
    intervals: dict[str, list[Interval]] = {"device": [], "uplink": [], "server": []}
    queues = {"device": list(plan.device_order), "uplink": list(plan.uplink_order),
              "server": list(plan.server_order)}
    free = {"device": 0.0, "uplink": 0.0, "server": 0.0}
    position = {"device": 0, "uplink": 0, "server": 0}
    paid_latency: set[int] = set()

    def ready_time(resource: str, job: int, item: int) -> float | None:
        graph = parts[job].graph
        if resource == "device":
            waits = [device_done.get((job, p)) for p in graph.parents[item] if p >= 0]
        elif resource == "uplink":
            waits = [0.0 if item < 0 else device_done.get((job, item))]
        else:
            waits = []
            for p in graph.parents[item]:
                if p >= 0 and not parts[job].mask[p]:
                    waits.append(server_done.get((job, p)))
                else:
                    waits.append(upload_done.get((job, p)))
        if any(w is None for w in waits):
            return None
        return max(waits, default=0.0)

    remaining = sum(len(q) for q in queues.values())
    while remaining:
        progressed = False
        for resource, queue in queues.items():
            while position[resource] < len(queue):
                job, item = queue[position[resource]]
                ready = ready_time(resource, job, item)
                if ready is None:
                    break
                graph = parts[job].graph
                if resource == "device":
                    duration = float(graph.device_s[item])
                elif resource == "uplink":
                    duration = tensor_seconds(instance, graph, item)
                    if job not in paid_latency:
                        paid_latency.add(job)
                        duration += instance.latency_s
                else:
                    duration = float(graph.server_s[item])
                start = max(free[resource], ready)
                free[resource] = start + duration
                {"device": device_done, "uplink": upload_done,
                 "server": server_done}[resource][job, item] = start + duration
                intervals[resource].append(Interval(job, start, start + duration))
                position[resource] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            stuck = {r: queues[r][position[r]] for r in queues if position[r] < len(queues[r])}
            raise InstanceError(f"layer plan deadlocks: each resource's next item waits for an "
                                f"item queued later ({stuck})")
    job_done = {j: 0.0 for j in range(instance.num_jobs)}
    for (job, _), end in list(device_done.items()) + list(server_done.items()):
        job_done[job] = max(job_done[job], end)
    return LayerResult(max(job_done.values()), job_done, intervals)


def expand_plan(instance: OffloadInstance, plan: PlanLike) -> LayerPlan:
    """The layer plan that serves jobs in ``plan``'s order, each job's items in graph order."""
    plan = as_plan(plan)
    options = dict(plan.steps)
    parts = {j: job_parts(instance, j, c) for j, c in plan.steps}
    order = plan.order()
    return LayerPlan(
        options=tuple(options[j] for j in range(instance.num_jobs)),
        device_order=tuple((j, v) for j in order for v in parts[j].device),
        uplink_order=tuple((j, u) for j in order for u in parts[j].tensors),
        server_order=tuple((j, v) for j in order for v in parts[j].server),
    )
