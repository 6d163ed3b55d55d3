"""Uplink emulation on any machine: a token bucket plus a fixed latency on the client socket.

Each frame first waits ``latency_s`` (the propagation delay the offloading model charges once
per upload: ``U = latency_s + 8 * bytes / (bandwidth_mbps * 1e6)``), then leaves in chunks of
at most ``chunk_bytes``, each paid for with tokens that refill at ``rate_mbps``; a chunk leaves
when its tokens are earned, so a transfer takes ``bytes / rate`` however the chunks fall, and
idle time is not banked into a burst. Only the uplink is shaped; results (1000 logits) come
back unshaped.
"""

from __future__ import annotations

import socket
import threading
import time

from device_bridge.protocol import send_buffers

DEFAULT_CHUNK_BYTES = 8192


class TokenBucket:
    """Blocking token bucket in bytes; thread-safe.

    Kept as a virtual clock: ``_link_free_at`` is when the link has sent every byte consumed
    so far. ``consume(n)`` books ``n / rate`` seconds starting at
    ``max(now - slack, _link_free_at)`` and sleeps until they are over, so a chunk leaves when
    the emulated link would have finished carrying it. ``slack`` is the larger of
    ``burst_bytes / rate`` and ``SLEEP_SLACK_S``: the latter lets a long transfer make up
    for sleeps that overshoot (a few hundred microseconds each) without banking more than
    a few milliseconds of idle time into a burst.
    """

    SLEEP_SLACK_S = 0.005

    def __init__(self, rate_mbps: float, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 burst_bytes: int = 0):
        if not rate_mbps > 0:
            raise ValueError(f"rate_mbps must be > 0, got {rate_mbps}")
        if chunk_bytes < 1 or burst_bytes < 0:
            raise ValueError(f"need chunk_bytes >= 1 and burst_bytes >= 0, got "
                             f"{chunk_bytes}, {burst_bytes}")
        self.rate_bytes_per_s = rate_mbps * 1e6 / 8
        self.chunk_bytes = chunk_bytes
        self.slack_s = max(burst_bytes / self.rate_bytes_per_s, self.SLEEP_SLACK_S)
        self._link_free_at = 0.0
        self._lock = threading.Lock()

    def consume(self, count: int) -> None:
        with self._lock:
            now = time.perf_counter()
            start = max(now - self.slack_s, self._link_free_at)
            self._link_free_at = start + count / self.rate_bytes_per_s
            wait = self._link_free_at - now
        if wait > 0:
            time.sleep(wait)


def _chunks(buffers: list[bytes | memoryview], size: int):
    """Split the concatenation of ``buffers`` into groups of at most ``size`` bytes, each a
    list of memoryviews (no copies), so a small header rides in the first chunk."""
    group: list[memoryview] = []
    room = size
    for buffer in buffers:
        view = memoryview(buffer).cast("B")
        while len(view):
            piece, view = view[:room], view[room:]
            group.append(piece)
            room -= len(piece)
            if room == 0:
                yield group
                group, room = [], size
    if group:
        yield group


class ShapedSender:
    """Sends buffers on a socket through a token bucket after a per-message latency.

    ``rate_mbps=None`` disables the bucket (latency still applies): the raw link.
    """

    def __init__(self, rate_mbps: float | None, latency_s: float = 0.0,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")
        self.bucket = TokenBucket(rate_mbps, chunk_bytes) if rate_mbps is not None else None
        self.latency_s = latency_s

    def send_message(self, sock: socket.socket, buffers: list[bytes | memoryview]) -> int:
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        if self.bucket is None:
            return send_buffers(sock, buffers)
        sent = 0
        for group in _chunks(buffers, self.bucket.chunk_bytes):
            count = sum(len(piece) for piece in group)
            self.bucket.consume(count)
            sent += send_buffers(sock, group)
        return sent
