"""The parameter-server model at the wire: the same traffic as :mod:`simulator`, framed.

:func:`simulator.evaluate` counts payload (shard bytes) and divides by a payload bandwidth.
A real link moves frames: gloo over TCP over Ethernet. Measured on kernel-shaped veth links
(``runtimes.ps``, ``benchmarks.ps_real``) the payload model was 7-15 % short of the bytes
the interfaces counted and 6-15 % short of the time a token-bucket link needs. This module
adds what the frames carry, per message; the planners keep the payload model (every message
is framed the same way, so it shifts plans' costs by a similar factor, 1.08-1.17 there).

Messages: for every ordered pair (owner ``o``, accessor ``m``) whose shards ``m`` reads,
one pull ``o -> m`` and one push ``m -> o`` per iteration, each of ``p`` payload bytes (the
shards' bytes). One gloo message of ``p`` bytes costs on the wire::

    n      = ceil((p + PREAMBLE) / MSS)            data frames
    wire(p) = p + PREAMBLE + FRAME * n             the data with gloo's preamble, framed
            + FRAME + PREAMBLE                     the receiver's "ready to receive" notice
            + FRAME * (ceil(n / 2) + 1)            bare ACKs: one per two data frames
                                                   (delayed ACK, RFC 1122) and the notice

with ``FRAME = 66`` (Ethernet 14 + IPv4 20 + TCP 20 + timestamps 12), ``MSS = 1448``
(MTU 1500) and ``PREAMBLE = 48`` (gloo's tcp ``Op`` preamble: before each message the
receiver tells the sender it is ready, and the data follow the sender's preamble). ACKs that
ride on data going the other way are not counted apart, so this slightly over-counts
exchanges in both directions at once. Every frame of a message passes the sender's and the
receiver's link, so with a link that carries both directions together (the simulator's
link)::

    link_wire[m] = sum of wire(p) over the messages m sends or receives
    machine_s[m] = compute_s[m] + link_wire[m] / line_rate[m]
    iteration_s  = max over m of machine_s[m]

``line_rate`` is the instance's ``bandwidth_bytes_per_s`` read as a line rate (frames, the
way ``tc tbf`` counts). ``wire_bytes = sum of wire(p)`` over all messages is what the
machines' ``tx_bytes`` counters add up to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from envs.param_server.instance import Allocation, ParamServerInstance
from envs.param_server.simulator import evaluate

FRAME_BYTES = 66
MSS_BYTES = 1448
PREAMBLE_BYTES = 48


@dataclass(frozen=True)
class WireResult:
    iteration_s: float
    wire_bytes: float
    link_wire_bytes: np.ndarray
    machine_s: np.ndarray
    messages: int


def message_wire_bytes(payload: np.ndarray) -> np.ndarray:
    """Bytes on the wire of gloo messages of ``payload`` bytes each (see module docstring)."""
    payload = np.asarray(payload, dtype=float)
    frames = np.ceil((payload + PREAMBLE_BYTES) / MSS_BYTES)
    return (payload + PREAMBLE_BYTES + FRAME_BYTES * frames + FRAME_BYTES + PREAMBLE_BYTES
            + FRAME_BYTES * (np.ceil(frames / 2) + 1))


def pair_bytes(instance: ParamServerInstance, allocation: Allocation) -> np.ndarray:
    """``(M, M)``: ``[o, m]`` = shard bytes machine ``m`` pulls from owner ``o`` (o != m)."""
    num_machines = instance.num_machines
    placement = sp.csr_matrix(
        (np.ones(instance.num_blocks), (np.arange(instance.num_blocks), allocation.block_machine)),
        shape=(instance.num_blocks, num_machines))
    access = np.asarray((instance.incidence.T @ placement).todense()) > 0   # shards x machines
    owner = np.zeros((instance.num_shards, num_machines))
    owner[np.arange(instance.num_shards), allocation.shard_machine] = 1.0
    pairs = owner.T @ (access * instance.shard_bytes[:, None].astype(float))
    np.fill_diagonal(pairs, 0.0)
    return pairs


def evaluate_wire(instance: ParamServerInstance, allocation: Allocation) -> WireResult:
    """Iteration time and bytes of ``allocation`` on framed links of line rate
    ``instance.bandwidth_bytes_per_s``."""
    payload = evaluate(instance, allocation)
    pairs = pair_bytes(instance, allocation)
    wire = np.where(pairs > 0, message_wire_bytes(pairs), 0.0)   # per pull; a push mirrors it
    per_pair = 2.0 * wire
    link = per_pair.sum(axis=0) + per_pair.sum(axis=1)
    machine_s = payload.compute_s + link / instance.bandwidth_bytes_per_s
    return WireResult(iteration_s=float(machine_s.max()), wire_bytes=float(per_pair.sum()),
                      link_wire_bytes=link, machine_s=machine_s,
                      messages=int(2 * np.count_nonzero(pairs)))
