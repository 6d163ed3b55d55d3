"""Run a real torchvision model split at a DAG partition (any predecessor-closed node set).

``device_bridge.graph_split`` splits only at single-tensor cut points; a DAG partition can send
several tensors. :class:`PartitionRunner` executes the traced graph (the same ``SplitModel``
trace whose node names the profiles use) node by node with a ``torch.fx.Interpreter``: the
device runs the partition's nodes on the input and returns every crossing tensor by node name;
the server runs the other nodes from those tensors and returns the model output.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import fx

from device_bridge.graph_split import SplitModel, _is_compute


class PartitionRunner(fx.Interpreter):
    def __init__(self, model_name: str) -> None:
        self.split = SplitModel(model_name)
        super().__init__(self.split.graph_module)
        self.nodes = list(self.split.graph_module.graph.nodes)
        self.by_name = {node.name: node for node in self.nodes}
        self.input_name = self.split.input_node.name

    def _check(self, device_nodes: frozenset[str]) -> None:
        unknown = device_nodes - set(self.by_name)
        if unknown:
            raise ValueError(f"{self.split.model_name}: unknown node(s) {sorted(unknown)[:4]}")
        for name in device_nodes:
            for parent in self.by_name[name].all_input_nodes:
                if _is_compute(parent) and parent.name not in device_nodes:
                    raise ValueError(f"{self.split.model_name}: partition not closed: {name} "
                                     f"reads {parent.name} from the server")

    def crossing(self, device_nodes: frozenset[str]) -> list[str]:
        """Names of the tensors the device sends (the input placeholder's name for the input)."""
        sent = []
        for node in self.nodes:
            if not (_is_compute(node) and node.name in device_nodes or node.op == "placeholder"):
                continue
            if any(_is_compute(user) and user.name not in device_nodes for user in node.users):
                sent.append(node.name)
        return sent

    @torch.inference_mode()
    def run_device(self, tensor: torch.Tensor, device_nodes: Iterable[str]
                   ) -> dict[str, torch.Tensor]:
        device_nodes = frozenset(device_nodes)
        self._check(device_nodes)
        self.env = {self.split.input_node: tensor}
        for node in self.nodes:
            if node.op == "get_attr" or (_is_compute(node) and node.name in device_nodes):
                self.env[node] = self.run_node(node)
        return {name: self.env[self.by_name[name]] for name in self.crossing(device_nodes)}

    @torch.inference_mode()
    def run_server(self, received: dict[str, torch.Tensor], device_nodes: Iterable[str]
                   ) -> torch.Tensor:
        device_nodes = frozenset(device_nodes)
        self.env = {self.by_name[name]: tensor for name, tensor in received.items()}
        for node in self.nodes:
            if node.op == "get_attr" or (_is_compute(node) and node.name not in device_nodes):
                self.env[node] = self.run_node(node)
        final = self.split.final_node
        if final not in self.env:
            raise ValueError(f"{self.split.model_name}: the output was computed on the device")
        return self.env[final]

    @torch.inference_mode()
    def run_full(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.split.model(tensor)
