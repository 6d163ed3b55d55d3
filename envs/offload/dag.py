"""DAG-structured DNN jobs: predecessor-closed partitions, min cuts and candidate options.

A :class:`DagJob` is a layer DAG: each :class:`DagLayer` names its parents in ``inputs``
(the job's input tensor is the parent named ``input_name``). A *partition* is the set of
layers that run on the device (a ``frozenset`` of layer names); it must be closed under
predecessors (no device layer reads a tensor produced on the server). For a partition ``P``::

    D(P) = sum of device_s over P
    S(P) = sum of server_s over the other layers
    B(P) = sum of output_bytes over the distinct tensors that cross: the job input if some
           server layer reads it, and every layer in P with at least one consumer outside P
           (a tensor read by two server layers is sent once)

A DagJob implements the same *cut-option interface* as a chain :class:`OffloadJob`
(``num_cuts``, ``local_cut``, ``device_prefix_s``, ``server_suffix_s``, ``cut_bytes``) over
its candidate partitions ``partitions``: option ``k`` is ``partitions[k]``; the last option
is all-local. The simulator, env, planners and CP-SAT model therefore handle mixed chain/DAG
batches unchanged. :func:`candidate_partitions` builds the candidate set for one bandwidth:
the single-tensor cut points, the DADS min-cut solutions over the weight sweep, the published
(repaired) DADS cut, the path-based partition and all-local.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache

import networkx as nx
import numpy as np

from envs.offload.instance import InstanceError, OffloadJob

#: DADS heavy-load weight sweep: each weight ``w`` prices device time by ``w`` and
#: upload+server time by ``1 - w``; ``0.5`` is the plain latency cut.
WEIGHT_SWEEP: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

Partition = frozenset[str]


@dataclass(frozen=True)
class DagLayer:
    name: str
    device_s: float
    server_s: float
    output_bytes: int
    inputs: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class DagGraph:
    """Index form of a job's DAG: layers in a topological order, parents as indices (``-1``
    is the job input). Equal and hashed by content, so min cuts are cached across copies."""

    names: tuple[str, ...]
    parents: tuple[tuple[int, ...], ...]
    device_s: np.ndarray
    server_s: np.ndarray
    output_bytes: np.ndarray
    input_bytes: int = 0

    @cached_property
    def _key(self) -> tuple:
        return (self.names, self.parents, self.input_bytes, self.device_s.tobytes(),
                self.server_s.tobytes(), self.output_bytes.tobytes())

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DagGraph) and self._key == other._key

    @cached_property
    def children(self) -> tuple[tuple[int, ...], ...]:
        children: list[list[int]] = [[] for _ in self.names]
        for child, parents in enumerate(self.parents):
            for parent in parents:
                if parent >= 0:
                    children[parent].append(child)
        return tuple(tuple(c) for c in children)

    @cached_property
    def input_readers(self) -> tuple[int, ...]:
        return tuple(v for v, parents in enumerate(self.parents) if -1 in parents)

    @cached_property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    # --- partitions as boolean masks (True = device) ---------------------------------------
    def mask(self, partition: Iterable[str]) -> np.ndarray:
        mask = np.zeros(len(self.names), dtype=bool)
        for name in partition:
            mask[self.index[name]] = True
        return mask

    def partition(self, mask: np.ndarray) -> Partition:
        return frozenset(self.names[i] for i in np.flatnonzero(mask))

    def is_closed(self, mask: np.ndarray) -> bool:
        """True when every device layer's parents are on the device too."""
        return all(p < 0 or mask[p] for v in np.flatnonzero(mask) for p in self.parents[v])

    def crossing(self, mask: np.ndarray) -> list[int]:
        """Tensors sent to the server (``-1`` is the job input), each once."""
        sent = [-1] if any(not mask[v] for v in self.input_readers) else []
        sent += [u for u in np.flatnonzero(mask) if any(not mask[c] for c in self.children[u])]
        return sent

    def terms(self, mask: np.ndarray) -> tuple[float, float, float]:
        """``(D, B, S)``: device seconds, bytes uploaded, server seconds."""
        sent = self.crossing(mask)
        sent_bytes = sum(self.input_bytes if u < 0 else int(self.output_bytes[u]) for u in sent)
        return (float(self.device_s[mask].sum()), float(sent_bytes),
                float(self.server_s[~mask].sum()))

    def close_down(self, mask: np.ndarray) -> np.ndarray:
        """The largest closed subset: drop every device layer with an ancestor on the server."""
        closed = mask.copy()
        for v in range(len(self.names)):  # topological order: parents are settled first
            if closed[v] and any(p >= 0 and not closed[p] for p in self.parents[v]):
                closed[v] = False
        return closed

    def close_up(self, mask: np.ndarray) -> np.ndarray:
        """The smallest closed superset: add every ancestor of a device layer."""
        closed = mask.copy()
        for v in reversed(range(len(self.names))):
            if closed[v]:
                for p in self.parents[v]:
                    if p >= 0:
                        closed[p] = True
        return closed

    def latency_s(self, mask: np.ndarray, bandwidth_mbps: float, latency_s: float) -> float:
        """Single-job latency ``D + U + S`` (``U`` and ``S`` are 0 when all local)."""
        device_s, sent_bytes, server_s = self.terms(mask)
        if mask.all():
            return device_s
        return device_s + latency_s + 8.0 * sent_bytes / (bandwidth_mbps * 1e6) + server_s


def topological_order(job_name: str, layers: Sequence[DagLayer], input_name: str) -> list[int]:
    """Kahn's algorithm, keeping the given order among ready layers; names the problem."""
    index: dict[str, int] = {}
    for i, layer in enumerate(layers):
        if layer.name in index:
            raise InstanceError(f"job {job_name!r}: layer name {layer.name!r} appears twice")
        if layer.name == input_name:
            raise InstanceError(f"job {job_name!r}: layer {layer.name!r} has the name of the "
                                f"job input")
        index[layer.name] = i
    indegree = [0] * len(layers)
    children: list[list[int]] = [[] for _ in layers]
    for i, layer in enumerate(layers):
        for parent in layer.inputs:
            if parent == input_name:
                continue
            if parent not in index:
                raise InstanceError(f"job {job_name!r}, layer {layer.name!r}: unknown input "
                                    f"{parent!r}")
            indegree[i] += 1
            children[index[parent]].append(i)
    ready = [i for i in range(len(layers)) if indegree[i] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for child in children[i]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, child)
    if len(order) < len(layers):
        stuck = [layers[i].name for i in range(len(layers)) if indegree[i] > 0]
        raise InstanceError(f"job {job_name!r}: the layer graph has a cycle through "
                            f"{', '.join(repr(n) for n in stuck[:6])}")
    return order


@dataclass(frozen=True)
class DagJob:
    """A DNN job whose layers form a DAG; options are the candidate ``partitions``.

    ``partitions`` empty means: the single-tensor cut points plus all-local (bandwidth-free);
    :meth:`with_candidates` adds the min-cut and path-based partitions for a bandwidth.
    """

    name: str
    input_bytes: int
    layers: tuple[DagLayer, ...]
    input_name: str = "input"
    partitions: tuple[Partition, ...] = ()

    def __post_init__(self) -> None:
        if not self.layers:
            raise InstanceError(f"job {self.name!r}: has no layers")
        order = topological_order(self.name, self.layers, self.input_name)
        graph = self._build_graph(order)
        object.__setattr__(self, "graph", graph)
        options = list(self.partitions) or (cut_point_partitions(graph)
                                             + [frozenset(graph.names)])
        for k, partition in enumerate(options):
            unknown = set(partition) - set(graph.names)
            if unknown:
                raise InstanceError(f"job {self.name!r}: partition {k} names unknown layer(s) "
                                    f"{sorted(unknown)[:4]}")
            if not graph.is_closed(graph.mask(partition)):
                raise InstanceError(f"job {self.name!r}: partition {k} is not closed under "
                                    f"predecessors")
        if len(options[-1]) != len(graph.names):
            raise InstanceError(f"job {self.name!r}: the last partition must be all-local")
        object.__setattr__(self, "partitions", tuple(frozenset(p) for p in options))

    def _build_graph(self, order: list[int]) -> DagGraph:
        position = {self.layers[i].name: k for k, i in enumerate(order)}
        ordered = [self.layers[i] for i in order]
        parents = tuple(tuple(sorted({-1 if p == self.input_name else position[p]
                                      for p in layer.inputs}))
                        for layer in ordered)
        return DagGraph(
            names=tuple(layer.name for layer in ordered), parents=parents,
            device_s=np.array([layer.device_s for layer in ordered], dtype=float),
            server_s=np.array([layer.server_s for layer in ordered], dtype=float),
            output_bytes=np.array([layer.output_bytes for layer in ordered], dtype=float),
            input_bytes=int(self.input_bytes))

    graph: DagGraph = field(init=False, repr=False, compare=False, hash=False)

    def with_candidates(self, bandwidth_mbps: float, latency_s: float = 0.0) -> DagJob:
        """This job with the candidate partitions of :func:`candidate_partitions`."""
        return replace(self, partitions=candidate_partitions(self.graph, bandwidth_mbps,
                                                             latency_s))

    def option_of(self, partition: Iterable[str]) -> int | None:
        """The option index of ``partition``, or None when it is not a candidate."""
        wanted = frozenset(partition)
        for k, candidate in enumerate(self.partitions):
            if candidate == wanted:
                return k
        return None

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    # --- the cut-option interface (see OffloadJob) -----------------------------------------
    @property
    def num_cuts(self) -> int:
        return len(self.partitions)

    @property
    def local_cut(self) -> int:
        return len(self.partitions) - 1

    @cached_property
    def _terms(self) -> np.ndarray:
        return np.array([self.graph.terms(self.graph.mask(p)) for p in self.partitions])

    @property
    def device_prefix_s(self) -> np.ndarray:
        return self._terms[:, 0]

    @property
    def cut_bytes(self) -> np.ndarray:
        return self._terms[:, 1]

    @property
    def server_suffix_s(self) -> np.ndarray:
        return self._terms[:, 2]


def chain_graph(job: OffloadJob) -> DagGraph:
    """The DAG view of a chain job: layer ``l`` reads layer ``l - 1`` (layer 1 the input)."""
    return DagGraph(
        names=tuple(layer.name for layer in job.layers),
        parents=tuple((i - 1,) for i in range(len(job.layers))),
        device_s=np.array([layer.device_s for layer in job.layers], dtype=float),
        server_s=np.array([layer.server_s for layer in job.layers], dtype=float),
        output_bytes=np.array([layer.output_bytes for layer in job.layers], dtype=float),
        input_bytes=int(job.input_bytes))


def job_graph(job: OffloadJob | DagJob) -> DagGraph:
    return job.graph if isinstance(job, DagJob) else chain_graph(job)


def job_option(job: OffloadJob | DagJob, mask: np.ndarray) -> int | None:
    """The option of ``job`` whose device set is ``mask`` (a chain's cut is the prefix size)."""
    if isinstance(job, DagJob):
        return job.option_of(job.graph.partition(mask))
    count = int(mask.sum())
    return count if mask[:count].all() else None


def option_mask(job: OffloadJob | DagJob, option: int) -> np.ndarray:
    """The device set of ``option`` as a boolean mask over the job graph's layers."""
    if isinstance(job, DagJob):
        return job.graph.mask(job.partitions[option])
    mask = np.zeros(len(job.layers), dtype=bool)
    mask[:option] = True
    return mask


# --- candidate partitions -------------------------------------------------------------------
def cut_point_partitions(graph: DagGraph) -> list[Partition]:
    """Prefixes of the topological order across which exactly one tensor is live (the empty
    prefix sends the input). For a chain these are the cuts ``0..L-1``."""
    last_use = np.full(len(graph), -1)
    for v in range(len(graph)):
        for c in graph.children[v]:
            last_use[v] = max(last_use[v], c)
    input_last = max(graph.input_readers, default=-1)
    points: list[Partition] = []
    for k in range(len(graph)):  # prefix of k layers: 0..k-1 on the device
        live = int(input_last >= k) + int(np.sum(last_use[:k] >= k))
        if live == 1:
            points.append(frozenset(graph.names[:k]))
    return points


def _transfer_price(bandwidth_mbps: float) -> float:
    return 8.0 / (bandwidth_mbps * 1e6)


@lru_cache(maxsize=4096)
def min_cut_mask(graph: DagGraph, bandwidth_mbps: float, weight: float = 0.5,
                 reverse_edges: bool = True, upload_weight: float = 1.0) -> tuple[bool, ...]:
    """The DADS minimum s-t cut (source side = device).

    Edge costs: ``source -> v`` is ``(1 - weight) * server_s[v]`` (paid when ``v`` runs on the
    server), ``v -> sink`` is ``weight * device_s[v]``; a tensor read by one layer is an edge of
    cost ``(1 - weight) * transfer``; a tensor read by several goes through an auxiliary node
    (``u -> u'`` costs the transfer once, ``u' -> consumer`` is infinite). With
    ``reverse_edges`` every dataflow edge also has an infinite reverse edge, so no device layer
    depends on a server layer; the published construction has none. ``upload_weight``
    multiplies the transfer costs (1 in DADS). Capacities are integer picoseconds: networkx's
    preflow-push can return a cut inconsistent with its own flow value on tiny float
    capacities.
    """
    price = _transfer_price(bandwidth_mbps) * upload_weight

    def ticks(seconds: float) -> int:
        return int(round(seconds * 1e12))

    flow = nx.DiGraph()
    source, sink, job_input = ("source",), ("sink",), ("input",)
    flow.add_edge(source, job_input)  # no capacity attribute: infinite
    for v in range(len(graph)):
        flow.add_edge(source, v, capacity=ticks((1 - weight) * float(graph.server_s[v])))
        flow.add_edge(v, sink, capacity=ticks(weight * float(graph.device_s[v])))
    producers: list[tuple[object, int, tuple[int, ...]]] = [
        (job_input, graph.input_bytes, graph.input_readers)]
    producers += [(u, int(graph.output_bytes[u]), graph.children[u]) for u in range(len(graph))]
    for node, size, consumers in producers:
        if not consumers:
            continue
        cost = ticks((1 - weight) * price * size)
        if len(consumers) == 1:
            flow.add_edge(node, consumers[0], capacity=cost)
        else:
            auxiliary = ("aux", node)
            flow.add_edge(node, auxiliary, capacity=cost)
            for consumer in consumers:
                flow.add_edge(auxiliary, consumer)
        if reverse_edges:
            for consumer in consumers:
                if node != job_input:
                    flow.add_edge(consumer, node)
    _, (device_side, _) = nx.minimum_cut(flow, source, sink)
    return tuple(v in device_side for v in range(len(graph)))


def dads_mask(graph: DagGraph, bandwidth_mbps: float, weight: float = 0.5,
              reverse_edges: bool = True, upload_weight: float = 1.0) -> np.ndarray:
    """DADS partition as a closed mask. Without reverse edges the cut may not be closed; it is
    then repaired by moving every layer with a server ancestor to the server."""
    mask = np.array(min_cut_mask(graph, float(bandwidth_mbps), float(weight), reverse_edges,
                                 float(upload_weight)))
    return mask if reverse_edges else graph.close_down(mask)


def path_decomposition(graph: DagGraph) -> list[list[int]]:
    """Disjoint paths covering the DAG: repeatedly the path of largest device time among the
    layers not yet covered (each path follows parent -> child edges)."""
    remaining = np.ones(len(graph), dtype=bool)
    paths: list[list[int]] = []
    while remaining.any():
        best = np.full(len(graph), -1.0)
        previous = np.full(len(graph), -1)
        for v in range(len(graph)):
            if not remaining[v]:
                continue
            best[v] = graph.device_s[v] + 1e-12
            for p in graph.parents[v]:
                if p >= 0 and remaining[p] and best[p] + graph.device_s[v] > best[v]:
                    best[v], previous[v] = best[p] + graph.device_s[v] + 1e-12, p
        end = int(np.argmax(best))
        path = [end]
        while previous[path[-1]] >= 0:
            path.append(int(previous[path[-1]]))
        path.reverse()
        remaining[path] = False
        paths.append(path)
    return paths


def path_based_mask(graph: DagGraph, bandwidth_mbps: float, latency_s: float) -> np.ndarray:
    """Path-based partition: for each path of :func:`path_decomposition` in turn, the chain
    method (try every cut along the path, keep the one of least single-job latency), where a
    cut puts the path's prefix and all its ancestors on the device."""
    mask = np.zeros(len(graph), dtype=bool)
    best_s = graph.latency_s(mask, bandwidth_mbps, latency_s)
    for path in path_decomposition(graph):
        chosen = mask
        for k in range(1, len(path) + 1):
            trial = mask.copy()
            trial[path[:k]] = True
            trial = graph.close_up(trial)
            trial_s = graph.latency_s(trial, bandwidth_mbps, latency_s)
            if trial_s < best_s - 1e-15:
                chosen, best_s = trial, trial_s
        mask = chosen
    return mask


def neurosurgeon_mask(graph: DagGraph, bandwidth_mbps: float, latency_s: float) -> np.ndarray:
    """Neurosurgeon: the single-tensor cut point (or all-local) of least latency."""
    masks = [graph.mask(p) for p in cut_point_partitions(graph)] + [np.ones(len(graph), bool)]
    return min(masks, key=lambda m: graph.latency_s(m, bandwidth_mbps, latency_s))


def closed_masks(graph: DagGraph, limit: int) -> list[np.ndarray] | None:
    """Every predecessor-closed set (as masks), or None when there are more than ``limit``."""
    found: list[np.ndarray] = []
    mask = np.zeros(len(graph), dtype=bool)

    def extend(v: int) -> bool:
        if v == len(graph):
            found.append(mask.copy())
            return len(found) <= limit
        if not extend(v + 1):
            return False
        if all(p < 0 or mask[p] for p in graph.parents[v]):
            mask[v] = True
            ok = extend(v + 1)
            mask[v] = False
            return ok
        return True

    return found if extend(0) else None


@lru_cache(maxsize=256)
def pareto_partitions(graph: DagGraph, limit: int = 4096) -> tuple[Partition, ...]:
    """The closed sets not dominated in (device s, bytes sent, server s) by another closed set,
    when the DAG has at most ``limit`` closed sets (small graphs); else none. No optimal plan
    needs a dominated partition (see :mod:`envs.offload.cuts`)."""
    masks = closed_masks(graph, limit)
    if masks is None:
        return ()
    terms = np.array([graph.terms(m) for m in masks])
    no_worse = np.all(terms[:, None, :] <= terms[None, :, :] + 1e-12, axis=2)
    better = np.any(terms[:, None, :] < terms[None, :, :] - 1e-12, axis=2)
    dominated = np.any(no_worse & better, axis=0)
    return tuple(graph.partition(m) for m, d in zip(masks, dominated, strict=True) if not d)


@lru_cache(maxsize=256)
def candidate_partitions(graph: DagGraph, bandwidth_mbps: float, latency_s: float = 0.0
                         ) -> tuple[Partition, ...]:
    """Single-tensor cut points, min cuts over :data:`WEIGHT_SWEEP`, the published (repaired)
    DADS cut, the path-based partition, and on small DAGs every Pareto-efficient closed set
    (:func:`pareto_partitions`); all-local last. Duplicates removed."""
    masks = [graph.mask(p) for p in cut_point_partitions(graph)]
    masks += [dads_mask(graph, bandwidth_mbps, w) for w in WEIGHT_SWEEP]
    masks.append(dads_mask(graph, bandwidth_mbps, 0.5, reverse_edges=False))
    masks.append(path_based_mask(graph, bandwidth_mbps, latency_s))
    masks += [graph.mask(p) for p in pareto_partitions(graph)]
    seen: set[Partition] = set()
    options: list[Partition] = []
    full = frozenset(graph.names)
    for mask in masks:
        partition = graph.partition(mask)
        if partition not in seen and partition != full:
            seen.add(partition)
            options.append(partition)
    return tuple(options) + (full,)


def dag_job_from_nodes(name: str, input_bytes: int, nodes: Sequence[dict],
                       bandwidth_mbps: float | None = None, latency_s: float = 0.0,
                       device_scale: float = 1.0, server_speedup: float | None = None) -> DagJob:
    """A DagJob from profile graph nodes (``device_bridge.profiler``'s ``graph.nodes``):
    the placeholder node becomes the job input."""
    inputs = [n["name"] for n in nodes if n.get("op") == "placeholder"]
    if len(inputs) != 1:
        raise InstanceError(f"job {name!r}: expected one placeholder node, found {len(inputs)}")
    layers = []
    for node in nodes:
        if node.get("op") == "placeholder":
            continue
        device_s = float(node["device_s"]) * device_scale
        server_s = (float(node["device_s"]) / server_speedup if server_speedup
                    else float(node["server_s"]))
        layers.append(DagLayer(str(node["name"]), device_s, server_s, int(node["output_bytes"]),
                               tuple(str(p) for p in node["inputs"])))
    job = DagJob(name, int(input_bytes), tuple(layers), input_name=inputs[0])
    return job.with_candidates(bandwidth_mbps, latency_s) if bandwidth_mbps else job


@lru_cache(maxsize=512)
def dag_job_from_profile(model: str, bandwidth_mbps: float, latency_s: float = 0.0,
                         device_scale: float = 1.0, server_speedup: float | None = None,
                         name: str | None = None) -> DagJob:
    """A DagJob from a shipped profile's node-level ``graph`` (written by
    ``device_bridge.profiler``), with the candidate partitions for ``bandwidth_mbps``."""
    from envs.offload.profiles import load_profile

    profile = load_profile(model)
    if "graph" not in profile:
        raise InstanceError(f"profile {model!r} has no node-level 'graph'; re-run "
                            f"python -m device_bridge.profiler --model {model}")
    return dag_job_from_nodes(name or model, int(profile["input_bytes"]),
                              profile["graph"]["nodes"], bandwidth_mbps, latency_s,
                              device_scale, server_speedup)
