"""Uplink emulation on any machine: a token bucket plus a fixed latency on the client socket.

Each frame holds the emulated uplink for ``latency_s + 8 * bytes / (bandwidth_mbps * 1e6)``,
the upload time the offloading model charges, and frames hold it one after another. The
frame leaves in chunks of at most ``chunk_bytes``: its first chunk after the latency and its
own transmission time, each later chunk when the link would have finished carrying it.
A frame starts when the link is free or when the frame became ready (``ready_at``; now if
not given), whichever is later, as the model starts an upload at ``max(device done, uplink
free)``; from then its schedule is fixed, so a sender thread that wakes late (another thread
held the GIL, the device was computing) sends the overdue chunks at once instead of losing
link time. Idle time before a frame was ready is never banked. Only the uplink is shaped;
results (1000 logits) come back unshaped.
"""

from __future__ import annotations

import socket
import threading
import time

from device_bridge.protocol import FrameMac, send_buffers, send_tagged

DEFAULT_CHUNK_BYTES = 8192


class TokenBucket:
    """Blocking token bucket in bytes; thread-safe.

    Kept as a virtual clock: ``_link_free_at`` is when the link has carried everything booked
    so far. ``consume`` books link time and sleeps until it is over. A new frame starts at
    ``max(ready_at, _link_free_at)`` (``ready_at``: when the frame became ready, at most now;
    now by default); a continuing chunk starts exactly at ``_link_free_at``, however late its
    thread woke, so a frame takes its full rate time and never more.
    """

    def __init__(self, rate_mbps: float, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        if not rate_mbps > 0:
            raise ValueError(f"rate_mbps must be > 0, got {rate_mbps}")
        if chunk_bytes < 1:
            raise ValueError(f"need chunk_bytes >= 1, got {chunk_bytes}")
        self.rate_bytes_per_s = rate_mbps * 1e6 / 8
        self.chunk_bytes = chunk_bytes
        self._link_free_at = 0.0
        self._lock = threading.Lock()

    def consume(self, count: int, new_frame: bool = False, extra_s: float = 0.0,
                ready_at: float | None = None) -> None:
        """Book ``count`` bytes (plus ``extra_s`` of link time, e.g. a frame's latency)."""
        with self._lock:
            now = time.perf_counter()
            if new_frame:
                start = max(min(ready_at, now) if ready_at is not None else now,
                            self._link_free_at)
            else:
                start = self._link_free_at
            self._link_free_at = start + extra_s + count / self.rate_bytes_per_s
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
    """Sends frames on a socket through a token bucket, each after a per-frame latency.

    ``rate_mbps=None`` disables the bucket (the latency is then slept before the frame): the
    raw link. ``send_message`` tags the frame with ``mac`` when given, hashing each chunk
    as it leaves.
    """

    def __init__(self, rate_mbps: float | None, latency_s: float = 0.0,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")
        self.bucket = TokenBucket(rate_mbps, chunk_bytes) if rate_mbps is not None else None
        self.latency_s = latency_s

    def send_message(self, sock: socket.socket, buffers: list[bytes | memoryview],
                     mac: FrameMac | None = None, ready_at: float | None = None) -> int:
        """Send one frame (``ready_at``: when it became ready, ``time.perf_counter()``)."""
        if self.bucket is None:
            if self.latency_s > 0:
                time.sleep(self.latency_s)
            return send_tagged(sock, buffers, mac)
        frame_mac = mac.start() if mac is not None else None
        sent = 0
        for number, group in enumerate(_chunks(buffers, self.bucket.chunk_bytes)):
            count = sum(len(piece) for piece in group)
            self.bucket.consume(count, new_frame=number == 0,
                                extra_s=self.latency_s if number == 0 else 0.0,
                                ready_at=ready_at)
            sent += send_buffers(sock, group)
            if frame_mac is not None:
                for piece in group:
                    frame_mac.update(piece)
        if frame_mac is not None:
            tag = FrameMac.finish(frame_mac)
            self.bucket.consume(len(tag))
            sent += send_buffers(sock, [tag])
        return sent
