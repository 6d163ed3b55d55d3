"""Split a torchvision model at its single-tensor cut points with torch.fx.

A *cut point* is a position in the traced graph's topological order where exactly one tensor
is live across the boundary: everything before it is needed afterwards only through that one
tensor. Cut ``0`` is the model input, cut ``L`` is the model output, and cuts ``1..L-1`` are
the interior cut points in order. Segment ``l`` (1-based) holds the nodes between cut ``l-1``
and cut ``l``. ``SplitModel.run_range(a, b, x)`` runs segments ``a+1..b`` on a tensor that
crossed cut ``a``: the device runs ``run_range(0, c, input)``, the server
``run_range(c, L, tensor)``. The profiler and the live runtime both use this one module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import fx
from torch.fx.passes.shape_prop import ShapeProp

from device_bridge.model_names import SUPPORTED_MODELS

MODEL_SEED = 0

# name -> (constructor, input shape at batch 1)
MODEL_BUILDERS: dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...]]] = {
    "alexnet": (lambda: torchvision.models.alexnet(weights=None), (1, 3, 224, 224)),
    "vgg16": (lambda: torchvision.models.vgg16(weights=None), (1, 3, 224, 224)),
    "resnet18": (lambda: torchvision.models.resnet18(weights=None), (1, 3, 224, 224)),
    "resnet50": (lambda: torchvision.models.resnet50(weights=None), (1, 3, 224, 224)),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(weights=None), (1, 3, 224, 224)),
    "googlenet": (
        lambda: torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False),
        (1, 3, 224, 224),
    ),
    "inception_v3": (
        lambda: torchvision.models.inception_v3(
            weights=None, aux_logits=False, init_weights=False),
        (1, 3, 299, 299),
    ),
}
assert tuple(MODEL_BUILDERS) == SUPPORTED_MODELS, "model_names.py lists the builders' names"


def input_shape(model_name: str, batch: int = 1) -> tuple[int, ...]:
    _check_model_name(model_name)
    return (batch, *MODEL_BUILDERS[model_name][1][1:])


def build_model(model_name: str) -> torch.nn.Module:
    """The torchvision model in eval mode with weights drawn from the fixed seed."""
    _check_model_name(model_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(MODEL_SEED)
        model = MODEL_BUILDERS[model_name][0]()
    return model.eval()


def weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer (name, dtype, shape, bytes), in state-dict order."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_model_name(model_name: str) -> None:
    if model_name not in MODEL_BUILDERS:
        raise ValueError(
            f"unknown model {model_name!r}; supported: {', '.join(SUPPORTED_MODELS)}")


@dataclass(frozen=True)
class CutPoint:
    index: int            # position of the node in graph order
    node_name: str        # the fx node whose tensor crosses the cut
    shape: tuple[int, ...]
    output_bytes: int     # fp32 bytes of that tensor


def _is_compute(node: fx.Node) -> bool:
    return node.op in ("call_module", "call_function", "call_method")


def _tensor_shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(int(s) for s in meta.shape)


class SplitModel:
    """A traced model with its cut points and cached prefix/suffix graph modules."""

    def __init__(self, model_name: str, model: torch.nn.Module | None = None):
        self.model_name = model_name
        self.model = model if model is not None else build_model(model_name)
        self.input_shape = input_shape(model_name)
        self.graph_module = fx.symbolic_trace(self.model)
        ShapeProp(self.graph_module).propagate(torch.zeros(self.input_shape))
        self.nodes: list[fx.Node] = list(self.graph_module.graph.nodes)
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ValueError(f"{model_name}: expected one input, found {len(placeholders)}")
        self.input_node = placeholders[0]
        self.output_node = next(n for n in self.nodes if n.op == "output")
        self.final_node = self.output_node.args[0]
        if not isinstance(self.final_node, fx.Node) or _tensor_shape(self.final_node) is None:
            raise ValueError(f"{model_name}: the model output must be a single tensor")
        self.cut_points = self._find_cut_points()
        # boundaries[c] is the node whose tensor crosses cut c (input, interior cuts, output)
        self.boundaries: list[fx.Node] = (
            [self.input_node]
            + [self.nodes[c.index] for c in self.cut_points]
            + [self.final_node])
        self._ranges: dict[tuple[int, int], fx.GraphModule] = {}

    @property
    def num_segments(self) -> int:
        return len(self.boundaries) - 1

    def _find_cut_points(self) -> list[CutPoint]:
        position = {node: i for i, node in enumerate(self.nodes)}
        last_use = {}
        for node in self.nodes:
            if node.op == "get_attr":
                continue  # constants are not activations; every segment can read them
            uses = [position[u] for u in node.users]
            last_use[node] = max(uses) if uses else position[node]
        final_index = position[self.final_node]
        cuts: list[CutPoint] = []
        for i, node in enumerate(self.nodes):
            if not _is_compute(node) or i >= final_index:
                continue
            live = [n for n, last in last_use.items() if position[n] <= i < last]
            if live != [node]:
                continue
            shape = _tensor_shape(node)
            if shape is None:
                continue
            numel = 1
            for s in shape:
                numel *= s
            cuts.append(CutPoint(i, node.name, shape, 4 * numel))
        return cuts

    def segment_nodes(self, segment: int) -> list[fx.Node]:
        """Compute nodes of segment ``segment`` (1-based)."""
        if not 1 <= segment <= self.num_segments:
            raise ValueError(f"{self.model_name}: segment {segment} out of 1..{self.num_segments}")
        position = {node: i for i, node in enumerate(self.nodes)}
        start = position[self.boundaries[segment - 1]]
        end = position[self.boundaries[segment]]
        return [n for n in self.nodes[start + 1:end + 1] if _is_compute(n)]

    def segment_name(self, segment: int) -> str:
        nodes = self.segment_nodes(segment)
        if len(nodes) == 1:
            return nodes[0].name
        return f"{nodes[0].name}..{nodes[-1].name}"

    def boundary_bytes(self, cut: int) -> int:
        """fp32 bytes of the tensor crossing cut ``cut`` (0 = input, L = output)."""
        shape = _tensor_shape(self.boundaries[cut])
        numel = 1
        for s in shape:
            numel *= s
        return 4 * numel

    def boundary_shape(self, cut: int) -> tuple[int, ...]:
        return _tensor_shape(self.boundaries[cut])

    def range_module(self, start_cut: int, end_cut: int) -> fx.GraphModule:
        """A GraphModule mapping the tensor at ``start_cut`` to the tensor at ``end_cut``."""
        if not 0 <= start_cut <= end_cut <= self.num_segments:
            raise ValueError(
                f"{self.model_name}: cut range {start_cut}..{end_cut} outside "
                f"0..{self.num_segments}")
        key = (start_cut, end_cut)
        if key not in self._ranges:
            self._ranges[key] = self._build_range(start_cut, end_cut)
        return self._ranges[key]

    def _build_range(self, start_cut: int, end_cut: int) -> fx.GraphModule:
        position = {node: i for i, node in enumerate(self.nodes)}
        start_node = self.boundaries[start_cut]
        end_node = self.boundaries[end_cut]
        graph = fx.Graph()
        env: dict[fx.Node, fx.Node] = {start_node: graph.placeholder("x")}

        def lookup(node: fx.Node) -> fx.Node:
            if node not in env:
                if node.op != "get_attr":
                    raise RuntimeError(
                        f"{self.model_name}: node {node.name} used across cut {start_cut}")
                env[node] = graph.node_copy(node, lookup)
            return env[node]

        for node in self.nodes[position[start_node] + 1:position[end_node] + 1]:
            if node.op == "get_attr":
                continue  # copied on first use
            env[node] = graph.node_copy(node, lookup)
        graph.output(env[end_node])
        module = fx.GraphModule(self.graph_module, graph)
        return module.eval()

    @torch.inference_mode()
    def run_range(self, start_cut: int, end_cut: int, tensor: torch.Tensor) -> torch.Tensor:
        if start_cut == end_cut:
            return tensor
        return self.range_module(start_cut, end_cut)(tensor)

    def to(self, device: torch.device | str) -> SplitModel:
        self.graph_module.to(device)
        self.model.to(device)
        return self
