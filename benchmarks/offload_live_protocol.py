"""The protocol measurements of ``benchmarks.offload_live`` (alone with ``--protocol-only``).

Channel cost, for 1 MiB float32 frames, every kind side by side in one run: rounds of a raw
``sendall``; the frame without tag; with its HMAC-SHA256 tag (the plain-TCP channel); with a
keyed BLAKE2b tag; over TLS 1.3 with the server certificate pinned, untagged (the TLS
channel); and over TLS with the HMAC tag as well (the protocol before the channel was
negotiated). The order rotates each round, each send is timed until the receiver's 1-byte ack,
the sender's sockets set as the client's link sets them, and the receiver is its own process
(as the server is) reading through the protocol's ``FrameReader``. Paths: loopback; an 18.88
Mbit/s (WiFi) token bucket; the same rate as a kernel-shaped uplink; and a 1 Gbit/s
full-duplex kernel link (veth pair between the network namespaces ``pch_dev`` and ``pch_srv``,
each direction rate-limited by its own ``tbf``). Per kind: the median time and the per-round
ratio to raw, its median with a distribution-free 95% CI.

CPU per MiB of each primitive: the standard library's keyed MACs (one pass, one end), and
TLS 1.3 (its AEAD through ``ssl``) as send + receive of 1 MiB sends on a loopback connection
in process CPU time, minus the same over plain TCP (both ends' encryption and decryption).

Also the rate each shaper delivers with the device idle and computing. Targets: the
overhead over raw at 1 Gbit/s of the two channels the protocol uses (TLS untagged, plain
HMAC-SHA256), judged on the upper end of the 95% CI, <= 5%; the loopback figures beside.
"""

from __future__ import annotations

import hashlib
import hmac
import multiprocessing
import os
import socket
import ssl
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch

from benchmarks.report import markdown_table, median_ci, target
from device_bridge import netem, protocol
from device_bridge.client import device_load
from device_bridge.link import SEND_BUFFER_BYTES
from device_bridge.protocol import FrameMac, MessageType
from device_bridge.shaping import ShapedSender
from device_bridge.tls import PinnedServerTls, ServerTls, self_signed_pair

# namespaces of this measurement: not the live runs' psdb_*, not psc_* (Spark's)
PROTOCOL_LINK = netem.VethPair.named("pch", 212)
GIGABIT_MBPS = 1000.0
# 125 kB of tbf bucket: two GSO super-packets, so a 1 MiB frame crosses at the rate
GIGABIT_BURST_S = 0.001
WARMUP_ROUNDS = 20
BENCH_KEY = b"offload-live-benchmark-frame-key"
SEND_KINDS = ("raw", "framed", "hmac-sha256", "blake2b", "tls", "tls+hmac-sha256")
TLS_KINDS = frozenset({"tls", "tls+hmac-sha256"})
KIND_MACS = {"hmac-sha256": "hmac-sha256", "blake2b": "blake2b",
             "tls+hmac-sha256": "hmac-sha256"}
# the two channels the protocol uses: inside TLS untagged, on plain TCP HMAC-tagged
CHANNELS = {"tls_channel": "tls", "hmac_channel": "hmac-sha256"}
TARGET_OVERHEAD = 0.05
MAC_CANDIDATES = {
    "hmac-sha256": lambda key, data: hmac.new(key, data, "sha256").digest(),
    "hmac-sha1": lambda key, data: hmac.new(key, data, "sha1").digest(),
    "hmac-sha512": lambda key, data: hmac.new(key, data, "sha512").digest(),
    "blake2b-keyed": lambda key, data: hashlib.blake2b(data, key=key, digest_size=16).digest(),
    "blake2s-keyed": lambda key, data: hashlib.blake2s(data, key=key, digest_size=16).digest(),
    "hmac-md5": lambda key, data: hmac.new(key, data, "md5").digest(),
}
PATHS = ("loopback", "wifi_bucket", "wifi_kernel", "gigabit_kernel")
TLS_CPU_MIB = 32
TLS_CPU_REPETITIONS = 5
CONNECT_TIMEOUT_S = 60.0

TlsFiles = tuple[str, str]  # certificate, key


def _round_order(number: int) -> tuple[str, ...]:
    """The send kinds of one round, rotated each round so none always follows another."""
    shift = number % len(SEND_KINDS)
    return SEND_KINDS[shift:] + SEND_KINDS[:shift]


def _accept(listener: socket.socket) -> socket.socket:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _readers(plain: socket.socket,
             tls: ssl.SSLSocket | None) -> dict[str, protocol.FrameReader]:
    """The receiving side of every framed kind, as the server reads (reused payload buffer;
    tags checked as bytes arrive; inside TLS a tagged frame refused unless tags are agreed)."""
    readers = {"framed": protocol.FrameReader(plain, reuse_payload=True)}
    for kind, algorithm in KIND_MACS.items():
        sock = tls if kind in TLS_KINDS else plain
        if sock is not None:
            readers[kind] = protocol.FrameReader(sock, reuse_payload=True,
                                                 mac=FrameMac(BENCH_KEY, algorithm))
    if tls is not None:
        readers["tls"] = protocol.FrameReader(tls, reuse_payload=True, untagged_channel=True)
    return readers


def _receiver(namespace: str | None, host: str, pipe, kinds: list[str], raw_size: int,
              tls_files: TlsFiles | None) -> None:
    """Receives ``kinds`` in order, acking each with one byte on its connection: a plain one
    and, with ``tls_files``, a TLS one accepted after it. Raw sends land in a preallocated
    buffer, frames go through the protocol's reader."""
    if namespace is not None:
        netem.enter_namespace(namespace)
    with ExitStack() as stack:
        listener = stack.enter_context(socket.create_server((host, 0)))
        pipe.send(listener.getsockname()[1])
        plain = stack.enter_context(_accept(listener))
        tls = None
        if tls_files is not None:
            tls = stack.enter_context(ServerTls(*tls_files).wrap(
                _accept(listener), time.monotonic() + CONNECT_TIMEOUT_S))
        raw_buffer = memoryview(bytearray(raw_size))
        readers = _readers(plain, tls)
        for kind in kinds:
            if kind == "raw":
                protocol.recv_exact_into(plain, raw_buffer)
            else:
                readers[kind].read()
            (tls if kind in TLS_KINDS else plain).sendall(b"k")


def _connect(host: str, port: int) -> socket.socket:
    """A sending socket with the options of the client's link."""
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    return sock


@contextmanager
def receiver_connection(kinds: list[str], raw_size: int, link: netem.VethPair | None,
                        tls_files: TlsFiles | None = None
                        ) -> Iterator[tuple[socket.socket, ssl.SSLSocket | None]]:
    """A plain connection and, with ``tls_files``, a TLS one (the receiver's certificate
    pinned) to a ``_receiver`` process; through the veth pair ``link`` when given."""
    host = link.server_ip if link is not None else "127.0.0.1"
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(
        target=_receiver, args=(link.server_ns if link is not None else None, host, child,
                                kinds, raw_size, tls_files))
    process.start()
    with ExitStack() as stack:
        stack.callback(process.join, 30)
        if not parent.poll(30):
            process.kill()
            raise RuntimeError("benchmark receiver did not start")
        port = parent.recv()
        previous = netem.enter_namespace(link.device_ns) if link is not None else None
        try:  # sockets live in the namespace of the thread that creates them
            plain = stack.enter_context(_connect(host, port))
            tls_raw = _connect(host, port) if tls_files is not None else None
        finally:
            if previous is not None:
                netem.leave_namespace(previous)
        tls = None
        if tls_raw is not None:
            tls = stack.enter_context(PinnedServerTls(tls_files[0]).wrap(
                tls_raw, time.monotonic() + CONNECT_TIMEOUT_S))
        yield plain, tls


def _send_kind(sock: socket.socket, kind: str, payload: torch.Tensor, raw_bytes: memoryview,
               mac: FrameMac | None, sender: ShapedSender | None) -> None:
    if kind == "raw" and sender is None:
        sock.sendall(raw_bytes)
        return
    buffers = [raw_bytes] if kind == "raw" else protocol.encode_frame(
        MessageType.INFER, request_id=1, tensor=payload, tagged=mac is not None)
    if sender is None:
        protocol.send_tagged(sock, buffers, mac)
    else:
        sender.send_message(sock, buffers, mac)


def paired_overheads(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per kind: median ms and, against raw in the same rounds, the median per-round ratio
    minus 1 (``overhead``) with its 95% CI (``overhead_low``, ``overhead_high``)."""
    raw = times["raw"]
    result = {"raw": {"median_ms": statistics.median(raw) * 1e3}}
    for kind in SEND_KINDS[1:]:
        ratio, low, high = median_ci([t / r for t, r in zip(times[kind], raw, strict=True)])
        result[kind] = {"median_ms": statistics.median(times[kind]) * 1e3,
                        "overhead": ratio - 1, "overhead_low": low - 1,
                        "overhead_high": high - 1}
    return result


def protocol_overhead(rounds: int, warmup: int, tls_files: TlsFiles, link_name: str,
                      rate_mbps: float | None = None,
                      link: netem.VethPair | None = None) -> dict[str, Any]:
    """``rounds`` rounds (after ``warmup`` untimed ones) of every send kind of 1 MiB on one
    plain and one TLS connection to a receiver process, each send timed to its ack. With
    ``rate_mbps`` every kind goes through the same token bucket; with ``link`` through that
    kernel-shaped veth pair (set up by the caller)."""
    sender = ShapedSender(rate_mbps) if rate_mbps is not None else None
    payload = torch.randn(2**18)  # 1 MiB of float32
    raw_bytes = protocol.tensor_bytes(payload)
    orders = [_round_order(number) for number in range(warmup + rounds)]
    macs = {kind: FrameMac(BENCH_KEY, algorithm) for kind, algorithm in KIND_MACS.items()}
    ack = memoryview(bytearray(1))
    times: dict[str, list[float]] = {kind: [] for kind in SEND_KINDS}
    kinds = [kind for order in orders for kind in order]
    with receiver_connection(kinds, len(raw_bytes), link, tls_files) as (plain, tls):
        for number, order in enumerate(orders):
            for kind in order:
                sock = tls if kind in TLS_KINDS else plain
                start = time.perf_counter()
                _send_kind(sock, kind, payload, raw_bytes, macs.get(kind), sender)
                protocol.recv_exact_into(sock, ack)
                if number >= warmup:
                    times[kind].append(time.perf_counter() - start)
        cipher = tls.cipher()[0]
    return {"link": link_name, "rate_mbps": rate_mbps, "rounds": rounds, "tls_cipher": cipher,
            "kinds": paired_overheads(times)}


def mac_candidates(repetitions: int = 40) -> dict[str, float]:
    """Median milliseconds per MiB of each keyed MAC the standard library offers."""
    data, key = os.urandom(2**20), os.urandom(32)
    result = {}
    for name, mac in MAC_CANDIDATES.items():
        samples = []
        for _ in range(repetitions):
            start = time.perf_counter()
            mac(key, data)
            samples.append(time.perf_counter() - start)
        result[name] = statistics.median(samples) * 1e3
    return result


@contextmanager
def _loopback_pair(tls_files: TlsFiles | None = None
                   ) -> Iterator[tuple[socket.socket, socket.socket]]:
    """Both ends of one loopback connection, TLS 1.3 with ``tls_files`` (pinned)."""
    with ExitStack() as stack:
        listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        client = stack.enter_context(_connect("127.0.0.1", listener.getsockname()[1]))
        server = stack.enter_context(_accept(listener))
        if tls_files is not None:
            deadline = time.monotonic() + CONNECT_TIMEOUT_S
            wrapped: dict[str, ssl.SSLSocket] = {}
            handshake = threading.Thread(target=lambda: wrapped.update(
                server=ServerTls(*tls_files).wrap(server, deadline)))
            handshake.start()
            client = stack.enter_context(PinnedServerTls(tls_files[0]).wrap(client, deadline))
            handshake.join()
            server = stack.enter_context(wrapped["server"])
        yield client, server


def _moved_cpu_ms_per_mib(sender: socket.socket, receiver: socket.socket, mib: int) -> float:
    """Process CPU milliseconds per MiB to send ``mib`` 1 MiB sends while a thread receives."""
    chunk = os.urandom(2**20)
    buffer = memoryview(bytearray(2**20))

    def drain() -> None:
        for _ in range(mib):
            protocol.recv_exact_into(receiver, buffer)

    drainer = threading.Thread(target=drain)
    start = time.process_time()
    drainer.start()
    for _ in range(mib):
        sender.sendall(chunk)
    drainer.join()
    return (time.process_time() - start) / mib * 1e3


def tls_cpu_cost(tls_files: TlsFiles, mib: int = TLS_CPU_MIB,
                 repetitions: int = TLS_CPU_REPETITIONS) -> dict[str, Any]:
    """CPU ms per MiB sent and received over TLS 1.3 and over plain TCP on loopback (medians
    of ``repetitions`` alternating runs of ``mib`` MiB); their difference is the AEAD of
    both ends (encrypt + decrypt) with its record handling."""
    samples: dict[str, list[float]] = {"plain": [], "tls": []}
    with _loopback_pair() as plain, _loopback_pair(tls_files) as tls:
        for _ in range(repetitions):
            samples["plain"].append(_moved_cpu_ms_per_mib(*plain, mib))
            samples["tls"].append(_moved_cpu_ms_per_mib(*tls, mib))
        cipher = tls[0].cipher()[0]
    plain_ms, tls_ms = (statistics.median(samples[name]) for name in ("plain", "tls"))
    return {"cipher": cipher, "plain_send_recv_ms_per_mib": plain_ms,
            "tls_send_recv_ms_per_mib": tls_ms, "aead_both_ends_ms_per_mib": tls_ms - plain_ms}


def shaper_under_load(splits: Sequence[Any], rates_mbps: Sequence[float],
                      link: netem.VethPair | None, latency_ms: float,
                      seconds: float = 1.5) -> list[dict[str, Any]]:
    """Uplink rate delivered to a receiver process, tagged frames of a quarter second each
    sent back to back from a backlog (all ready at the start, as queued uploads), idle and
    while a thread keeps the device computing (as during a batch); through the token bucket
    on loopback, or the kernel's qdisc on ``link``."""
    rows = []
    link_name = "veth+tbf (kernel)" if link is not None else "loopback+token bucket"
    for rate in rates_mbps:
        if link is not None:
            netem.set_rate(rate, latency_ms, link)
        frame_bytes = int(rate * 1e6 / 8 * 0.25)
        frames = max(2, round(seconds / 0.25))
        tensor = torch.zeros(frame_bytes, dtype=torch.uint8)
        for loaded in (False, True):
            sender = ShapedSender(None if link is not None else rate)
            mac = FrameMac(BENCH_KEY)
            ack = memoryview(bytearray(1))
            with receiver_connection(["hmac-sha256"] * (frames + 1), 0, link) as (sock, _), \
                    device_load(splits if loaded else ()):
                sent, start = 0, None
                for frame in range(frames + 1):  # the first frame warms the path up
                    if frame == 1:
                        sent, start = 0, time.perf_counter()
                    # a backlog, as the uploader's queue: every frame is ready from the start
                    sent += sender.send_message(sock, protocol.encode_frame(
                        MessageType.PROBE, tensor=tensor, tagged=True), mac, start)
                    protocol.recv_exact_into(sock, ack)
                elapsed = time.perf_counter() - start
            delivered = 8 * sent / elapsed / 1e6
            rows.append({"link": link_name, "nominal_mbps": rate, "device_computing": loaded,
                         "delivered_mbps": delivered, "delivered_over_nominal": delivered / rate})
            print(f"  shaper {link_name} {rate} Mbit/s, device "
                  f"{'computing' if loaded else 'idle'}: {delivered:.2f} Mbit/s", flush=True)
    return rows


def kernel_measurements(quick: bool, latency_ms: float, splits: Sequence[Any],
                        tls_files: TlsFiles, wifi_mbps: float,
                        shaper_rates: Sequence[float]) -> dict[str, Any]:
    """On ``PROTOCOL_LINK``: the channel cost and the shaper rows through the WiFi-rate
    uplink, then the channel cost through the 1 Gbit/s full-duplex link; torn down after."""
    result: dict[str, Any] = {}
    try:
        netem.up(wifi_mbps, latency_ms, PROTOCOL_LINK)
        result["wifi_kernel"] = protocol_overhead(
            3 if quick else 6, 1, tls_files, "veth+tbf uplink (kernel)", wifi_mbps,
            PROTOCOL_LINK)
        result["shaper_rows"] = shaper_under_load(splits, shaper_rates, PROTOCOL_LINK,
                                                  latency_ms)
        netem.up_duplex(GIGABIT_MBPS, PROTOCOL_LINK, GIGABIT_BURST_S)
        result["gigabit_kernel"] = protocol_overhead(
            50 if quick else 200, 5, tls_files, "veth+tbf both ways (kernel)", GIGABIT_MBPS,
            PROTOCOL_LINK)
    finally:
        netem.down(PROTOCOL_LINK)
    return result


def _certificate(directory: str) -> TlsFiles:
    try:
        return self_signed_pair(directory, "offload-live-bench", days=1)
    except ValueError as error:
        raise SystemExit(f"protocol measurements need a TLS certificate: {error}") from None


def protocol_section(quick: bool, latency_ms: float, kernel_path: bool, splits: Sequence[Any],
                     wifi_mbps: float, shaper_rates: Sequence[float]) -> dict[str, Any]:
    """Every protocol measurement (see the module docstring), printed as it goes."""
    with tempfile.TemporaryDirectory() as directory:
        tls_files = _certificate(directory)
        section: dict[str, Any] = {
            "mac_ms_per_mib": mac_candidates(), "tls_cpu": tls_cpu_cost(tls_files),
            "loopback": protocol_overhead(200 if quick else 1000, WARMUP_ROUNDS, tls_files,
                                          "loopback"),
            "wifi_bucket": protocol_overhead(3 if quick else 6, 1, tls_files,
                                             "loopback+token bucket", wifi_mbps)}
        section["shaper_rows"] = shaper_under_load(splits, shaper_rates, None, latency_ms)
        if kernel_path:
            kernel = kernel_measurements(quick, latency_ms, splits, tls_files, wifi_mbps,
                                         shaper_rates)
            section["shaper_rows"] += kernel.pop("shaper_rows", [])
            section.update(kernel)
    for name in PATHS:
        if name in section:
            print(_overhead_line(section[name]), flush=True)
    print(_cpu_line(section), flush=True)
    return section


def _percent(entry: dict[str, float]) -> str:
    return (f"{entry['overhead'] * 100:+.1f}% [{entry['overhead_low'] * 100:+.1f}, "
            f"{entry['overhead_high'] * 100:+.1f}]")


def _overhead_line(path: dict[str, Any]) -> str:
    kinds = path["kinds"]
    rate = f" {path['rate_mbps']:g} Mbit/s" if path["rate_mbps"] else ""
    return (f"channel cost, 1 MiB, {path['link']}{rate} ({path['rounds']} rounds, raw "
            f"{kinds['raw']['median_ms']:.3f} ms; overhead vs raw, median [95% CI]): "
            + ", ".join(f"{kind} {_percent(kinds[kind])}" for kind in SEND_KINDS[1:]))


def _cpu_line(section: dict[str, Any]) -> str:
    tls = section["tls_cpu"]
    macs = ", ".join(f"{name} {ms:.3f}" for name, ms in section["mac_ms_per_mib"].items())
    return (f"CPU ms per MiB: keyed MACs (one pass) {macs}; {tls['cipher']} send+recv "
            f"{tls['tls_send_recv_ms_per_mib']:.3f} vs plain {tls['plain_send_recv_ms_per_mib']:.3f}"
            f" (AEAD, both ends: {tls['aead_both_ends_ms_per_mib']:.3f})")


def protocol_targets(section: dict[str, Any]) -> dict[str, dict]:
    """Each channel's overhead over raw through the 1 Gbit/s kernel link, the upper end of
    its 95% CI, <= 5%; without the kernel link the targets fail with the reason."""
    gigabit = section.get("gigabit_kernel")
    reason = None if gigabit else "no 1 Gbit/s kernel link (kernel-shaped path unavailable)"
    return {f"{name}_overhead_1mib_1gbit_upper95": target(
        gigabit["kinds"][kind]["overhead_high"] if gigabit else None, TARGET_OVERHEAD, "<=",
        reason) for name, kind in CHANNELS.items()}


def print_beside_targets(section: dict[str, Any]) -> None:
    """The loopback figure of each target's channel, printed beside the targets."""
    loop = section["loopback"]["kinds"]
    print("  loopback beside them: " + ", ".join(
        f"{name} {_percent(loop[kind])}" for name, kind in CHANNELS.items()))


def _path_rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in PATHS:
        if name not in section:
            continue
        path = section[name]
        for kind in SEND_KINDS:
            entry = path["kinds"][kind]
            rows.append({"path": path["link"], "rate_mbps": path["rate_mbps"] or "",
                         "rounds": path["rounds"], "kind": kind,
                         "median_ms": entry["median_ms"],
                         "overhead": _percent(entry) if kind != "raw" else ""})
    return rows


def protocol_markdown(section: dict[str, Any]) -> str:
    tls = section["tls_cpu"]
    macs = ", ".join(f"{name} {ms:.3f}" for name, ms in section["mac_ms_per_mib"].items())
    return "\n".join([
        "Channel cost of a 1 MiB float32 frame, every kind side by side (order rotating each "
        "round, each send timed to the receiver's ack; overhead = median per-round ratio to "
        f"raw - 1, [95% CI]; TLS cipher {section['loopback']['tls_cipher']}):", "",
        markdown_table(_path_rows(section), ["path", "rate_mbps", "rounds", "kind",
                                             "median_ms", "overhead"]), "",
        f"CPU ms per MiB: keyed MACs of the standard library, one pass (median): {macs}. "
        f"TLS 1.3 ({tls['cipher']}) send + receive on loopback "
        f"{tls['tls_send_recv_ms_per_mib']:.3f}, plain TCP "
        f"{tls['plain_send_recv_ms_per_mib']:.3f}: the AEAD of both ends "
        f"{tls['aead_both_ends_ms_per_mib']:.3f} (a tagged frame costs two MAC passes).", "",
        "Shaped uplink, delivered rate with the device idle and computing:", "",
        markdown_table(section["shaper_rows"], ["link", "nominal_mbps", "device_computing",
                                                "delivered_mbps", "delivered_over_nominal"])])
