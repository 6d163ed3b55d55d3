"""The offloading server: runs the suffix of a model after any cut point, for many clients.

    python -m device_bridge.server --models resnet18,mobilenet_v2 --port 0 --token-file F
        [--host 127.0.0.1] [--device auto|cpu|cuda] [--threads N] [--max-frame-mb 64]
        [--handshake-timeout-s 10] [--idle-timeout-s 300] [--frame-timeout-s 30]
        [--max-connections 64] [--max-handshakes 16] [--max-handshakes-per-address 8]
        [--max-batch 32|MODEL=N,...] [--max-concurrent 4] [--queue-timeout-s 10]
        [--max-buffered-mb 512] [--tls-cert server.crt --tls-key server.key]
        [--insecure-plaintext]

Prints ``listening on HOST:PORT device=DEVICE`` once ready (``--port 0`` picks a free port).
The token file must be private (no group or other access) and hold at least 32 bytes; a
server bound to an address other than loopback must serve TLS 1.3 unless
``--insecure-plaintext`` says otherwise. Each connection gets its own thread, up to
``--max-connections`` at once, of which at most ``--max-handshakes`` (and at most
``--max-handshakes-per-address`` from one address) may still be in their handshake; a
connection over a cap gets an ERROR ``server_busy`` and is closed at once by the accept
thread, which also survives failures of ``accept`` itself (EMFILE: logged, brief back-off).
The mutual handshake (see ``device_bridge.protocol``; TLS first with ``--tls-cert``) must
finish within ``--handshake-timeout-s`` as a whole, however the bytes trickle in. After it,
INFER frames are answered by RESULT frames that carry the server compute time, every frame
tagged under the session keys on plain TCP, untagged inside TLS (its records protect them; the
CHALLENGE says which, and a client refuses untagged frames without TLS). Bounds for
authenticated peers: a connection silent for ``--idle-timeout-s`` is closed
(``idle_timeout``); once a frame's first byte is in, the rest must arrive within
``--frame-timeout-s``, and each reply must leave within it (``frame_timeout``); an INFER is
checked from its header before its payload is read (model, cut, shape, dtype, batch at most
``--max-batch``); payload buffers of all connections hold at most ``--max-buffered-mb``
together, and at most ``--max-concurrent`` inferences run at once, a request waiting up to
``--queue-timeout-s`` for a slot (``server_busy`` otherwise). A malformed, oversized,
unauthenticated, tampered, replayed or refused frame gets an ERROR with a fixed code (plus a
one-line reason only for a peer that proved the token) and closes that connection only, with
the reason logged (peer-chosen text quoted by ``repr``). Every request is logged with its
model, cut, bytes and compute time.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import signal
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from device_bridge import protocol
from device_bridge.model_names import SUPPORTED_MODELS
from device_bridge.protocol import (
    ErrorCode,
    FrameMac,
    Header,
    MessageType,
    ProtocolError,
    ResourceLimit,
    peer_text,
)
from device_bridge.tls import ServerTls

if TYPE_CHECKING:  # torch loads when a server starts: --help and argument errors answer at once
    import torch

    from device_bridge.graph_split import SplitModel

LOG = logging.getLogger("device_bridge.server")
HANDSHAKE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 300.0
FRAME_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 64
MAX_HANDSHAKES = 16
MAX_HANDSHAKES_PER_ADDRESS = 8  # half the slots: one address cannot hold them all
MAX_BATCH = 32
MAX_CONCURRENT = 4
QUEUE_TIMEOUT_S = 10.0
MAX_BUFFERED_BYTES = 512 * 2**20
# after an ERROR the connection is shut for writing and read (discarded) this long, so the
# peer's unread bytes do not turn the close into a reset that would drop the ERROR
LINGER_S = 1.0
ACCEPT_BACKOFF_S = (0.05, 1.0)  # first and longest pause after a failed accept()
FLOAT_DTYPES = frozenset({protocol.DType.FLOAT32, protocol.DType.FLOAT16,
                          protocol.DType.BFLOAT16, protocol.DType.FLOAT64})
WARMUP_RUNS = 2
TIMING_RUNS = 5


@dataclass
class HostedModel:
    split: SplitModel
    weights_sha256: str
    whole_model_s: float = 0.0   # median of full forward passes on the serving device


@dataclass
class ServerStats:
    connections: int = 0
    authenticated: int = 0
    rejected: int = 0        # AUTH tag wrong: no token
    refused_busy: int = 0    # over the connection or handshake caps
    refused_limits: int = 0  # authenticated, refused by budget, slots or frame deadline
    integrity_failures: int = 0
    accept_errors: int = 0   # accept() failed (EMFILE, ...) and the loop went on
    requests: int = 0
    compute_s: list[float] = field(default_factory=list)

    def summary(self) -> str:
        median_ms = statistics.median(self.compute_s) * 1e3 if self.compute_s else 0.0
        return (f"connections={self.connections} authenticated={self.authenticated} "
                f"rejected={self.rejected} refused_busy={self.refused_busy} "
                f"refused_limits={self.refused_limits} "
                f"integrity_failures={self.integrity_failures} "
                f"accept_errors={self.accept_errors} requests={self.requests} "
                f"median_compute_ms={median_ms:.2f}")


@dataclass(eq=False)
class Session:
    """One connection's state: proven once the AUTH tag checked, welcomed once WELCOME left
    (from then on every frame it sends is tagged under ``send_mac``, or untagged when that is
    None inside TLS); errored once an ERROR went out."""
    sock: socket.socket
    where: str
    address: str
    proven: bool = False
    welcomed: bool = False
    errored: bool = False
    send_mac: FrameMac | None = None


class WriteStalled(Exception):
    """The peer did not take a reply within the frame deadline."""


@dataclass(frozen=True)
class ServerLimits:
    """Every bound the server puts on its peers (see the module docstring)."""
    max_frame_bytes: int = protocol.DEFAULT_MAX_FRAME_BYTES
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S
    idle_timeout_s: float = IDLE_TIMEOUT_S
    frame_timeout_s: float = FRAME_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS
    max_handshakes: int = MAX_HANDSHAKES
    max_handshakes_per_address: int = MAX_HANDSHAKES_PER_ADDRESS
    max_batch: int | Mapping[str, int] = MAX_BATCH  # one cap, or per model (others MAX_BATCH)
    max_concurrent: int = MAX_CONCURRENT
    queue_timeout_s: float = QUEUE_TIMEOUT_S
    max_buffered_bytes: int = MAX_BUFFERED_BYTES

    def check(self, models: Sequence[str]) -> None:
        """ValueError (one line) for a bound that cannot work."""
        for name in ("handshake_timeout_s", "idle_timeout_s", "frame_timeout_s",
                     "queue_timeout_s", "max_frame_bytes", "max_concurrent"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 1 <= self.max_handshakes_per_address <= self.max_handshakes \
                <= self.max_connections:
            raise ValueError(f"need 1 <= max_handshakes_per_address <= max_handshakes <= "
                             f"max_connections, got {self.max_handshakes_per_address}, "
                             f"{self.max_handshakes}, {self.max_connections}")
        if self.max_buffered_bytes < self.max_frame_bytes:
            raise ValueError(f"the buffer budget ({self.max_buffered_bytes} bytes) must hold "
                             f"at least one frame ({self.max_frame_bytes} bytes)")
        caps = self.max_batch if isinstance(self.max_batch, Mapping) else {}
        for name in caps:
            if name not in models:
                raise ValueError(f"max batch given for {name!r}, which is not served")
        for name in models:
            if self.batch_cap(name) < 1:
                raise ValueError(f"max batch for {name} must be >= 1, got "
                                 f"{self.batch_cap(name)}")

    def batch_cap(self, model: str) -> int:
        if isinstance(self.max_batch, Mapping):
            return self.max_batch.get(model, MAX_BATCH)
        return self.max_batch


def parse_max_batch(spec: str) -> int | dict[str, int]:
    """``"32"`` (every model) or ``"resnet18=8,alexnet=16"`` (models not named: MAX_BATCH)."""
    try:
        if "=" not in spec:
            return int(spec)
        caps = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, count = part.partition("=")
            caps[name.strip()] = int(count)
        return caps
    except ValueError:
        raise ValueError(f"--max-batch: {spec!r} is neither N nor MODEL=N,...") from None


def is_loopback(host: str) -> bool:
    """Every address ``host`` names is a loopback address ("" and 0.0.0.0 are not)."""
    if not host:
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as error:
        raise ValueError(f"--host {host!r}: {error.strerror}") from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def require_tls_off_loopback(host: str, tls: ServerTls | None, insecure_plaintext: bool) -> None:
    if tls is None and not insecure_plaintext and not is_loopback(host):
        raise ValueError(f"--host {host!r} is not a loopback address: serve TLS (--tls-cert, "
                         f"--tls-key) or pass --insecure-plaintext")


def pick_device(requested: str) -> torch.device:
    import torch

    if requested == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    return device


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def check_models(models: Sequence[str]) -> None:
    if not models:
        raise ValueError("the server needs at least one model")
    for name in models:
        if name not in SUPPORTED_MODELS:
            raise ValueError(f"unknown model {name!r}; supported: {', '.join(SUPPORTED_MODELS)}")


def linger_close(sock: socket.socket) -> None:
    """Shut our side, read and drop what the peer still sends (at most ``LINGER_S``), close:
    closing with unread bytes would reset the connection and could lose the ERROR just sent."""
    deadline = time.monotonic() + LINGER_S
    scratch = bytearray(64 * 1024)
    try:
        sock.shutdown(socket.SHUT_WR)
        while True:
            protocol.recv_exact_into(sock, memoryview(scratch)[:1], deadline=deadline)
            sock.recv_into(scratch)
    except OSError:
        pass  # EOF, reset or the linger time is over: nothing left to do but close
    sock.close()


class OffloadServer:
    """Hosts models and serves suffix requests on a TCP socket; ``start()`` returns at once."""

    def __init__(self, models: Sequence[str], token: bytes, host: str = "127.0.0.1",
                 port: int = 0, device: str = "auto", limits: ServerLimits | None = None,
                 tls: ServerTls | None = None, insecure_plaintext: bool = False):
        check_models(models)
        protocol.check_token(token)
        self.limits = limits if limits is not None else ServerLimits()
        self.limits.check(models)
        require_tls_off_loopback(host, tls, insecure_plaintext)
        import torch

        from device_bridge.graph_split import SplitModel, weights_hash

        self.token = token
        self.device = pick_device(device)
        if self.device.type == "cuda":
            # full fp32 so server results match the device's CPU results to rounding
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.tls = tls
        self.stats = ServerStats()
        self.models: dict[str, HostedModel] = {}
        for name in models:
            split = SplitModel(name)
            hosted = HostedModel(split, weights_hash(split.model))
            split.to(self.device)
            for cut in range(split.num_segments):  # build every suffix before serving
                split.range_module(cut, split.num_segments)
            self.models[name] = hosted
        self._time_models()
        for name, hosted in self.models.items():
            LOG.info("hosting %s on %s: %d cut points, whole model %.1f ms", name, self.device,
                     hosted.split.num_segments + 1, hosted.whole_model_s * 1e3)
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self.budget = protocol.ByteBudget(self.limits.max_buffered_bytes)
        self.inference_slots = threading.BoundedSemaphore(self.limits.max_concurrent)
        self._closing = threading.Event()
        self._lock = threading.Lock()  # guards stats, _sessions and the handshake counts
        self._accept_thread: threading.Thread | None = None
        self._sessions: dict[Session, threading.Thread] = {}
        self._handshaking = 0
        self._handshaking_from: Counter[str] = Counter()

    def _time_models(self) -> None:
        """Median whole-model time per model on the serving device, round-robin over the
        models (as mixed requests arrive), reported to clients in WELCOME for planning."""
        import torch

        samples: dict[str, list[float]] = {name: [] for name in self.models}
        inputs = {name: torch.randn(hosted.split.input_shape, device=self.device)
                  for name, hosted in self.models.items()}
        for run in range(WARMUP_RUNS + TIMING_RUNS):
            for name, hosted in self.models.items():
                start = time.perf_counter()
                hosted.split.run_range(0, hosted.split.num_segments, inputs[name])
                _synchronize(self.device)
                if run >= WARMUP_RUNS:
                    samples[name].append(time.perf_counter() - start)
        for name, hosted in self.models.items():
            hosted.whole_model_s = statistics.median(samples[name])

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._sessions)

    def start(self) -> OffloadServer:
        self._accept_thread = threading.Thread(target=self._accept_loop, name="accept",
                                               daemon=True)
        self._accept_thread.start()
        return self

    def close(self, join_timeout_s: float = 10.0) -> None:
        """Stop accepting, close every connection and wait for their threads."""
        self._closing.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            sessions = dict(self._sessions)
        for session in sessions:
            try:
                session.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in [self._accept_thread, *sessions.values()]:
            if thread is not None:
                thread.join(join_timeout_s)

    def __enter__(self) -> OffloadServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- accepting ----------------------------------------------------------------------
    def _accept_loop(self) -> None:
        pause = ACCEPT_BACKOFF_S[0]
        while not self._closing.is_set():
            try:
                conn, peer = self._listener.accept()
            except OSError as error:
                if self._closing.is_set():
                    return  # listener closed
                with self._lock:
                    self.stats.accept_errors += 1
                LOG.warning("accept failed (%s); retrying in %.2f s", error, pause)
                self._closing.wait(pause)
                pause = min(2 * pause, ACCEPT_BACKOFF_S[1])
                continue
            pause = ACCEPT_BACKOFF_S[0]
            self._admit_connection(conn, peer)

    def _admit_connection(self, conn: socket.socket, peer: tuple) -> None:
        """Start a connection thread, or refuse the connection if a cap is reached."""
        address = peer[0]
        with self._lock:
            self.stats.connections += 1
            cap = self._cap_reached(address)
            if cap:
                self.stats.refused_busy += 1
            else:
                session = Session(conn, f"{peer[0]}:{peer[1]}", address)
                thread = threading.Thread(target=self._serve, args=(session,),
                                          name=f"conn-{peer[1]}", daemon=True)
                self._sessions[session] = thread
                self._handshaking += 1
                self._handshaking_from[address] += 1
        if cap:
            self._refuse_busy(conn, peer, cap)
            return
        try:
            thread.start()
        except RuntimeError as error:  # no thread left for it: refuse, keep accepting
            LOG.warning("%s: refused: %s", session.where, error)
            self._forget(session)
            conn.close()

    def _cap_reached(self, address: str) -> str:
        """Which cap a new connection from ``address`` would cross ('' if none); lock held."""
        limits = self.limits
        if len(self._sessions) >= limits.max_connections:
            return f"{len(self._sessions)} connections open (cap {limits.max_connections})"
        if self._handshaking >= limits.max_handshakes:
            return (f"{self._handshaking} connections in their handshake (cap "
                    f"{limits.max_handshakes})")
        if self._handshaking_from[address] >= limits.max_handshakes_per_address:
            return (f"{self._handshaking_from[address]} connections from {address} in their "
                    f"handshake (cap {limits.max_handshakes_per_address} per address)")
        return ""

    def _refuse_busy(self, conn: socket.socket, peer: tuple, cap: str) -> None:
        """Tell the peer why (plain TCP only: a TLS peer expects a TLS handshake first) and
        close, without ever blocking the accept thread."""
        LOG.warning("%s:%d: refused: %s", peer[0], peer[1], cap)
        if self.tls is None:
            conn.setblocking(False)
            try:
                protocol.send_frame(conn, MessageType.ERROR,
                                    control=protocol.error_payload(ErrorCode.SERVER_BUSY))
            except OSError:
                pass
        conn.close()

    def _handshake_over(self, session: Session) -> None:
        """The session leaves the handshake counts; lock held."""
        self._handshaking -= 1
        self._handshaking_from[session.address] -= 1
        if not self._handshaking_from[session.address]:
            del self._handshaking_from[session.address]

    def _forget(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session, None)
            if not session.welcomed:
                self._handshake_over(session)

    # ---- one connection -----------------------------------------------------------------
    def _serve(self, session: Session) -> None:
        reader = None
        try:
            session.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            deadline = time.monotonic() + self.limits.handshake_timeout_s
            if self.tls is not None:
                session.sock = self.tls.wrap(session.sock, deadline)
            hosted_list, receive_mac = self._handshake(session, deadline)
            reader = protocol.FrameReader(
                session.sock, self.limits.max_frame_bytes, reuse_payload=True, mac=receive_mac,
                admit=lambda header: self._admit_frame(header, hosted_list),
                budget=self.budget, idle_timeout_s=self.limits.idle_timeout_s,
                frame_timeout_s=self.limits.frame_timeout_s,
                untagged_channel=receive_mac is None)
            self._serve_requests(session, reader, hosted_list)
        except Exception as error:  # deliberate: every failure closes this connection only
            self._fail(session, error)
        finally:
            if reader is not None:
                reader.release()
            self._forget(session)
            if session.errored:
                linger_close(session.sock)
            else:
                session.sock.close()

    def _fail(self, session: Session, error: Exception) -> None:
        """Log why the connection closes and tell the peer with an ERROR where one can go."""
        where = session.where
        if isinstance(error, protocol.ConnectionClosed):
            LOG.info("%s: closed by peer", where)
        elif isinstance(error, WriteStalled):
            LOG.warning("%s: closing connection: %s", where, error)
            self._count_limit()
        elif isinstance(error, TimeoutError):
            self._timed_out(session, error)
        elif isinstance(error, protocol.IntegrityError):
            LOG.warning("%s: closing connection: %s", where, error)
            with self._lock:
                if session.welcomed:
                    self.stats.integrity_failures += 1
                else:
                    self.stats.rejected += 1
            self._send_error(session, ErrorCode.INTEGRITY if session.welcomed
                             else ErrorCode.AUTH_FAILED)
        elif isinstance(error, ResourceLimit):
            LOG.warning("%s: refused: %s", where, error)
            self._count_limit()
            self._send_error(session, ErrorCode.SERVER_BUSY, str(error))
        elif isinstance(error, ProtocolError):
            LOG.warning("%s: closing connection: %s", where, error)
            self._send_error(session, ErrorCode.BAD_REQUEST if session.proven
                             else ErrorCode.BAD_FRAME, str(error))
        elif isinstance(error, OSError):
            if not self._closing.is_set():
                LOG.warning("%s: socket error: %s", where, error)
        else:  # one bad request never takes the server down
            LOG.error("%s: closing connection after an internal error", where,
                      exc_info=error)
            self._send_error(session, ErrorCode.INTERNAL)

    def _timed_out(self, session: Session, error: TimeoutError) -> None:
        if not session.welcomed:
            LOG.warning("%s: closing connection: handshake timeout", session.where)
            self._send_error(session, ErrorCode.HANDSHAKE_TIMEOUT)
        elif isinstance(error, protocol.IdleTimeout):
            LOG.warning("%s: closing connection: idle timeout", session.where)
            self._send_error(session, ErrorCode.IDLE_TIMEOUT)
        else:
            reason = (f"a frame's bytes took longer than the frame deadline of "
                      f"{self.limits.frame_timeout_s} s")
            LOG.warning("%s: closing connection: %s", session.where, reason)
            self._count_limit()
            self._send_error(session, ErrorCode.FRAME_TIMEOUT, reason)

    def _count_limit(self) -> None:
        with self._lock:
            self.stats.refused_limits += 1

    def _send_error(self, session: Session, code: ErrorCode, reason: str | None = None) -> None:
        """An ERROR with a fixed code; a reason only for a peer that proved the token."""
        control = protocol.error_payload(code, reason if session.proven else None)
        session.errored = True
        try:
            protocol.send_frame(session.sock, MessageType.ERROR, control=control,
                                mac=session.send_mac if session.welcomed else None,
                                deadline=time.monotonic() + LINGER_S)
        except OSError:
            pass  # the peer is gone or not reading: it is being closed anyway

    def _reply(self, session: Session, msg_type: MessageType, **fields: object) -> None:
        """Send a tagged frame that must leave within the frame deadline."""
        timeout_s = self.limits.frame_timeout_s
        try:
            protocol.send_frame(session.sock, msg_type, mac=session.send_mac,
                                deadline=time.monotonic() + timeout_s, **fields)
        except TimeoutError:
            raise WriteStalled(f"the peer did not take a {msg_type.name} within the frame "
                               f"deadline of {timeout_s} s") from None

    def _handshake(self, session: Session,
                   deadline: float) -> tuple[list[HostedModel], FrameMac | None]:
        """The hosted models the peer asked for and the MAC of its frames (None: untagged,
        inside TLS)."""
        sock = session.sock
        nonce = secrets.token_bytes(protocol.NONCE_BYTES)
        frame_tags = self.tls is None  # inside TLS its AEAD records protect every frame
        challenge = protocol.encode_frame(MessageType.CHALLENGE, control={
            "protocol": protocol.VERSION, "nonce": nonce.hex(),
            "models": {name: hosted.weights_sha256 for name, hosted in self.models.items()},
            "frame_tags": frame_tags})
        protocol.send_buffers(sock, challenge, deadline)
        frame = protocol.read_frame(sock, protocol.MAX_CONTROL_BYTES, deadline)
        if frame.msg_type != MessageType.AUTH:
            raise ProtocolError(f"expected AUTH, got {frame.msg_type.name}")
        auth = frame.json()
        client_nonce = protocol.parse_nonce(auth.get("nonce"))
        to_server, to_client = protocol.session_keys(self.token, nonce, client_nonce,
                                                     bytes(challenge[1]))
        receive_mac, session.send_mac = FrameMac(to_server), FrameMac(to_client)
        receive_mac.check(frame)  # IntegrityError: the peer does not know the token
        session.proven = True
        requested = auth.get("models")
        if not isinstance(requested, dict) or not requested:
            raise ProtocolError("AUTH must name at least one model with its weights hash")
        hosted_list = []
        for name, digest in requested.items():
            if name not in self.models:
                raise ProtocolError(f"model {peer_text(name)} is not hosted here "
                                    f"(hosted: {', '.join(self.models)})")
            if digest != self.models[name].weights_sha256:
                raise ProtocolError(f"model {name!r}: weights hash mismatch")
            hosted_list.append(self.models[name])
        with self._lock:  # counted before WELCOME leaves: the peer may reconnect at once
            session.welcomed = True
            self._handshake_over(session)
            self.stats.authenticated += 1
        protocol.send_frame(sock, MessageType.WELCOME, mac=session.send_mac, deadline=deadline,
                            control={"models": list(requested), "device": str(self.device),
                                     "whole_model_s": {name: self.models[name].whole_model_s
                                                       for name in requested},
                                     "frame_tags": frame_tags})
        LOG.info("%s: authenticated for %s (%s frames)", session.where, ", ".join(requested),
                 "tagged" if frame_tags else "untagged TLS")
        if not frame_tags:
            session.send_mac = receive_mac = None
        return hosted_list, receive_mac

    # ---- requests -----------------------------------------------------------------------
    def _admit_frame(self, header: Header, hosted_list: list[HostedModel]) -> None:
        """Refuse a request from its header alone, before any payload byte is read."""
        if header.msg_type == MessageType.PROBE:
            return
        if header.msg_type != MessageType.INFER:
            raise ProtocolError(f"unexpected {header.msg_type.name} after the handshake")
        if header.model_id >= len(hosted_list):
            raise ProtocolError(f"model id {header.model_id} not agreed in the handshake")
        split = hosted_list[header.model_id].split
        if header.cut >= split.num_segments:
            raise ProtocolError(f"{split.model_name}: cut {header.cut} out of range "
                                f"0..{split.num_segments - 1}")
        expected, shape = split.boundary_shape(header.cut), header.shape
        if len(shape) != len(expected) or shape[1:] != expected[1:]:
            raise ProtocolError(f"{split.model_name}: cut {header.cut} expects shape "
                                f"(N, {', '.join(map(str, expected[1:]))}), got {shape}")
        if header.dtype not in FLOAT_DTYPES:
            raise ProtocolError(f"INFER tensor must be floating point, got "
                                f"{header.dtype.name.lower()}")
        cap = self.limits.batch_cap(split.model_name)
        if shape[0] > cap:
            raise ProtocolError(f"{split.model_name}: batch {shape[0]} exceeds this server's "
                                f"maximum of {cap}")

    def _serve_requests(self, session: Session, reader: protocol.FrameReader,
                        hosted_list: list[HostedModel]) -> None:
        # each frame is answered before the next is read, so one payload buffer serves all;
        # the reader admits only INFER and PROBE
        while True:
            frame = reader.read()
            if frame.msg_type == MessageType.INFER:
                self._infer(session, frame, hosted_list)
            else:
                self._reply(session, MessageType.PROBE_ACK, request_id=frame.request_id)

    def _take_slot(self) -> None:
        """One of the ``max_concurrent`` inference slots, or ResourceLimit after the wait."""
        limits = self.limits
        if not self.inference_slots.acquire(timeout=limits.queue_timeout_s):
            raise ResourceLimit(f"{limits.max_concurrent} inferences running; no slot free "
                                f"within {limits.queue_timeout_s} s")

    def _infer(self, session: Session, frame: protocol.Frame,
               hosted_list: list[HostedModel]) -> None:
        import torch

        split = hosted_list[frame.model_id].split
        self._take_slot()
        try:
            start = time.perf_counter()
            tensor = frame.tensor.to(self.device, dtype=torch.float32)
            output = split.run_range(frame.cut, split.num_segments, tensor).to("cpu")
            elapsed = time.perf_counter() - start
        finally:
            self.inference_slots.release()
        self._reply(session, MessageType.RESULT, request_id=frame.request_id,
                    model_id=frame.model_id, cut=frame.cut, elapsed_s=elapsed, tensor=output)
        with self._lock:
            self.stats.requests += 1
            self.stats.compute_s.append(elapsed)
        LOG.info("%s: request %d %s cut %d: %d bytes in, compute %.2f ms", session.where,
                 frame.request_id, split.model_name, frame.cut, frame.tensor.nbytes,
                 elapsed * 1e3)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m device_bridge.server",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True, help="comma-separated model names")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind; other than loopback needs TLS or "
                             "--insecure-plaintext")
    parser.add_argument("--token-file", required=True,
                        help="shared secret, >= 32 bytes, no group or other access (chmod 600)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--max-frame-mb", type=float, default=64.0)
    parser.add_argument("--handshake-timeout-s", type=float, default=HANDSHAKE_TIMEOUT_S,
                        help="deadline for the whole handshake (TLS included)")
    parser.add_argument("--idle-timeout-s", type=float, default=IDLE_TIMEOUT_S,
                        help="close an authenticated connection silent this long")
    parser.add_argument("--frame-timeout-s", type=float, default=FRAME_TIMEOUT_S,
                        help="after the handshake: the rest of a frame must arrive within "
                             "this of its first byte, and each reply must leave within it")
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS)
    parser.add_argument("--max-handshakes", type=int, default=MAX_HANDSHAKES,
                        help="connections still in their handshake, at most")
    parser.add_argument("--max-handshakes-per-address", type=int,
                        default=MAX_HANDSHAKES_PER_ADDRESS,
                        help="connections from one address still in their handshake, at most")
    parser.add_argument("--max-batch", default=str(MAX_BATCH),
                        help=f"largest batch of one INFER: N for every model, or MODEL=N,... "
                             f"(models not named: {MAX_BATCH})")
    parser.add_argument("--max-concurrent", type=int, default=MAX_CONCURRENT,
                        help="inferences running at once")
    parser.add_argument("--queue-timeout-s", type=float, default=QUEUE_TIMEOUT_S,
                        help="how long a request waits for an inference slot")
    parser.add_argument("--max-buffered-mb", type=float, default=MAX_BUFFERED_BYTES / 2**20,
                        help="payload buffers of all connections together, at most")
    parser.add_argument("--tls-cert", help="serve TLS 1.3 with this certificate (PEM)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument("--insecure-plaintext", action="store_true",
                        help="allow plain TCP on an address other than loopback (tensors and "
                             "AUTH tags readable on the path)")
    parser.add_argument("--log-level", default="INFO")
    return parser


def _limits(args: argparse.Namespace) -> ServerLimits:
    return ServerLimits(
        max_frame_bytes=int(args.max_frame_mb * 2**20),
        handshake_timeout_s=args.handshake_timeout_s, idle_timeout_s=args.idle_timeout_s,
        frame_timeout_s=args.frame_timeout_s, max_connections=args.max_connections,
        max_handshakes=args.max_handshakes,
        max_handshakes_per_address=args.max_handshakes_per_address,
        max_batch=parse_max_batch(args.max_batch), max_concurrent=args.max_concurrent,
        queue_timeout_s=args.queue_timeout_s,
        max_buffered_bytes=int(args.max_buffered_mb * 2**20))


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if bool(args.tls_cert) != bool(args.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        tls = ServerTls(args.tls_cert, args.tls_key) if args.tls_cert else None
        token = protocol.read_token_file(args.token_file)
        models = [m for m in args.models.split(",") if m]
        check_models(models)
        limits = _limits(args)
        limits.check(models)
        require_tls_off_loopback(args.host, tls, args.insecure_plaintext)
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        server = OffloadServer(models, token, args.host, args.port, args.device, limits, tls,
                               args.insecure_plaintext)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    except OSError as error:
        parser.exit(2, f"error: cannot listen on {args.host}:{args.port}: {error.strerror}\n")
    LOG.info("serving on %s with %d torch threads (pid %d)", server.device,
             torch.get_num_threads(), os.getpid())
    print(f"listening on {server.host}:{server.port} device={server.device}", flush=True)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        LOG.info("shut down: %s", server.stats.summary())


if __name__ == "__main__":
    main()
