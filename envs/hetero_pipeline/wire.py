"""The pipeline model at the wire: activations, gradients and all-reduces framed as gloo
messages over TCP over Ethernet (the framing of :mod:`envs.param_server.wire`).

:func:`simulator.simulate` moves ``activation_bytes`` and ``param_bytes`` over links of
``bandwidth_mbps``. A kernel-shaped link (``tc tbf``) paces frames, so a transfer of ``p``
payload bytes occupies its direction for ``data(p) / rate`` with::

    data(p) = p + PREAMBLE + FRAME * ceil((p + PREAMBLE) / MSS)

(the receiver's notice and the ACKs travel the other direction of a duplex link).
:func:`framed_instance` is the same instance with every layer's ``activation_bytes`` and
``param_bytes`` replaced by ``data(.)`` of it, so ``simulate(framed_instance(i), plan)``
is the iteration time on such links (``bandwidth_mbps`` read as the line rate; use it for
times only: its memory figures would count the framing too).

:func:`wire_bytes` is what the devices' ``tx_bytes`` counters add up to per iteration:
every gloo message with all its frames (``envs.param_server.wire.message_wire_bytes``):

- boundary ``s -> s+1``, per micro-batch: for every pair of a sender and a receiver member
  whose sample ranges overlap, one activation message of ``rows * a_s / B`` bytes and one
  gradient message of the same size back;
- stage ``s`` with ``n >= 2`` members: a ring all-reduce, ``2 (n - 1)`` messages of
  ``P_s / n`` bytes from every member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from envs.hetero_pipeline.instance import ModelProfile, PipelineInstance, PipelinePlan
from envs.param_server.wire import FRAME_BYTES, MSS_BYTES, PREAMBLE_BYTES, message_wire_bytes

Ranges = Sequence[tuple[int, int]]


def data_bytes(payload: float) -> float:
    """Bytes of a message's data frames (one direction), ``data(p)`` above."""
    frames = np.ceil((payload + PREAMBLE_BYTES) / MSS_BYTES)
    return float(payload + PREAMBLE_BYTES + FRAME_BYTES * frames)


def framed_instance(instance: PipelineInstance) -> PipelineInstance:
    layers = tuple(replace(layer, activation_bytes=data_bytes(layer.activation_bytes),
                           param_bytes=data_bytes(layer.param_bytes))
                   for layer in instance.model.layers)
    model = ModelProfile(instance.model.name, instance.model.input_bytes, layers)
    return replace(instance, model=model)


def _overlap_rows(senders: Ranges, receivers: Ranges) -> list[int]:
    rows = []
    for lo, hi in senders:
        for other_lo, other_hi in receivers:
            if min(hi, other_hi) > max(lo, other_lo):
                rows.append(min(hi, other_hi) - max(lo, other_lo))
    return rows


def wire_bytes(instance: PipelineInstance, plan: PipelinePlan, ranges: Sequence[Ranges],
               micro_batch_size: int) -> float:
    """Bytes on the wire per iteration; ``ranges[s]`` = the sample range of each member."""
    model, total = instance.model, 0.0
    for s in range(plan.num_stages - 1):
        per_sample = model.activation_bytes[plan.stages[s].stop - 1] / micro_batch_size
        rows = np.array(_overlap_rows(ranges[s], ranges[s + 1]), dtype=float)
        total += 2 * instance.num_microbatches * message_wire_bytes(rows * per_sample).sum()
    for stage in plan.stages:
        n = len(stage.devices)
        if n > 1:
            params = model.param_prefix_bytes[stage.stop] - model.param_prefix_bytes[stage.start]
            total += n * 2 * (n - 1) * float(message_wire_bytes(params / n))
    return total
