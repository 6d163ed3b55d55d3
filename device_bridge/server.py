"""The offloading server: runs the suffix of a model after any cut point, for many clients.

    python -m device_bridge.server --models resnet18,mobilenet_v2 --port 0 --token-file F
        [--host 127.0.0.1] [--device auto|cpu|cuda] [--threads N] [--max-frame-mb 64]
        [--handshake-timeout-s 10] [--idle-timeout-s 300] [--max-connections 64]
        [--max-handshakes 16] [--tls-cert server.crt --tls-key server.key]

Prints ``listening on HOST:PORT device=DEVICE`` once ready (``--port 0`` picks a free port).
Each connection gets its own thread, up to ``--max-connections`` at once, of which at most
``--max-handshakes`` may still be in their handshake; a connection over either cap gets an
ERROR ``server_busy`` and is closed at once by the accept thread. The mutual handshake (see
``device_bridge.protocol``; TLS first with ``--tls-cert``) must finish within
``--handshake-timeout-s`` as a whole, however the bytes trickle in. After it, INFER frames are
answered by RESULT frames that carry the server compute time, every frame tagged under the
session keys; a connection silent for ``--idle-timeout-s`` is closed (ERROR
``idle_timeout``). A malformed, oversized, unauthenticated, tampered or replayed frame, an
unknown model or a cut out of range gets an ERROR with a fixed code (plus a reason only for a
peer that proved the token) and closes that connection only, with the reason logged. Every
request is logged with its model, cut, bytes and compute time.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import socket
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from device_bridge import protocol
from device_bridge.model_names import SUPPORTED_MODELS
from device_bridge.protocol import ErrorCode, FrameMac, MessageType, ProtocolError
from device_bridge.tls import ServerTls

if TYPE_CHECKING:  # torch loads when a server starts: --help and argument errors answer at once
    import torch

    from device_bridge.graph_split import SplitModel

LOG = logging.getLogger("device_bridge.server")
HANDSHAKE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 300.0
MAX_CONNECTIONS = 64
MAX_HANDSHAKES = 16
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
    refused_busy: int = 0    # over the connection or handshake cap
    integrity_failures: int = 0
    requests: int = 0
    compute_s: list[float] = field(default_factory=list)

    def summary(self) -> str:
        median_ms = statistics.median(self.compute_s) * 1e3 if self.compute_s else 0.0
        return (f"connections={self.connections} authenticated={self.authenticated} "
                f"rejected={self.rejected} refused_busy={self.refused_busy} "
                f"integrity_failures={self.integrity_failures} requests={self.requests} "
                f"median_compute_ms={median_ms:.2f}")


@dataclass(eq=False)
class Session:
    """One connection's state: proven once the AUTH tag checked, welcomed once WELCOME left
    (from then on every frame it sends is tagged)."""
    sock: socket.socket
    where: str
    proven: bool = False
    welcomed: bool = False
    send_mac: FrameMac | None = None


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


class OffloadServer:
    """Hosts models and serves suffix requests on a TCP socket; ``start()`` returns at once."""

    def __init__(self, models: Sequence[str], token: bytes, host: str = "127.0.0.1",
                 port: int = 0, device: str = "auto",
                 max_frame_bytes: int = protocol.DEFAULT_MAX_FRAME_BYTES,
                 handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
                 idle_timeout_s: float = IDLE_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS, max_handshakes: int = MAX_HANDSHAKES,
                 tls: ServerTls | None = None):
        check_models(models)
        if not (handshake_timeout_s > 0 and idle_timeout_s > 0):
            raise ValueError(f"timeouts must be > 0, got handshake {handshake_timeout_s}, "
                             f"idle {idle_timeout_s}")
        if not 1 <= max_handshakes <= max_connections:
            raise ValueError(f"need 1 <= max_handshakes <= max_connections, got "
                             f"{max_handshakes}, {max_connections}")
        import torch

        from device_bridge.graph_split import SplitModel, weights_hash

        self.token = token
        self.device = pick_device(device)
        if self.device.type == "cuda":
            # full fp32 so server results match the device's CPU results to rounding
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.max_frame_bytes = max_frame_bytes
        self.handshake_timeout_s = handshake_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes
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
        self._closing = threading.Event()
        self._lock = threading.Lock()  # guards stats, _sessions and _handshaking
        self._accept_thread: threading.Thread | None = None
        self._sessions: dict[Session, threading.Thread] = {}
        self._handshaking = 0

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

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return  # listener closed
            with self._lock:
                self.stats.connections += 1
                busy = (len(self._sessions) >= self.max_connections
                        or self._handshaking >= self.max_handshakes)
                if busy:
                    self.stats.refused_busy += 1
                else:
                    session = Session(conn, f"{peer[0]}:{peer[1]}")
                    thread = threading.Thread(target=self._serve, args=(session,),
                                              name=f"conn-{peer[1]}", daemon=True)
                    self._sessions[session] = thread
                    self._handshaking += 1
            if busy:
                self._refuse_busy(conn, peer)
            else:
                thread.start()

    def _refuse_busy(self, conn: socket.socket, peer: tuple) -> None:
        """Tell the peer why (plain TCP only: a TLS peer expects a TLS handshake first) and
        close, without ever blocking the accept thread."""
        LOG.warning("%s:%d: refused: %d connections open (cap %d, handshake cap %d)",
                    peer[0], peer[1], self.open_connections, self.max_connections,
                    self.max_handshakes)
        if self.tls is None:
            conn.setblocking(False)
            try:
                protocol.send_frame(conn, MessageType.ERROR,
                                    control=protocol.error_payload(ErrorCode.SERVER_BUSY))
            except OSError:
                pass
        conn.close()

    def _serve(self, session: Session) -> None:
        conn, where = session.sock, session.where
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            deadline = time.monotonic() + self.handshake_timeout_s
            if self.tls is not None:
                session.sock = self.tls.wrap(conn, deadline)
            hosted_list, receive_mac = self._handshake(session, deadline)
            session.sock.settimeout(self.idle_timeout_s)
            self._serve_requests(session, hosted_list, receive_mac)
        except protocol.ConnectionClosed:
            LOG.info("%s: closed by peer", where)
        except TimeoutError:
            timeout = "idle" if session.welcomed else "handshake"
            LOG.warning("%s: closing connection: %s timeout", where, timeout)
            self._send_error(session, ErrorCode.IDLE_TIMEOUT if session.welcomed
                             else ErrorCode.HANDSHAKE_TIMEOUT)
        except protocol.IntegrityError as error:
            LOG.warning("%s: closing connection: %s", where, error)
            with self._lock:
                if session.welcomed:
                    self.stats.integrity_failures += 1
                else:
                    self.stats.rejected += 1
            self._send_error(session, ErrorCode.INTEGRITY if session.welcomed
                             else ErrorCode.AUTH_FAILED)
        except ProtocolError as error:
            LOG.warning("%s: closing connection: %s", where, error)
            if session.proven:
                self._send_error(session, ErrorCode.BAD_REQUEST, str(error))
            else:
                self._send_error(session, ErrorCode.BAD_FRAME)
        except OSError as error:
            if not self._closing.is_set():
                LOG.warning("%s: socket error: %s", where, error)
        except Exception:  # deliberate: one bad request never takes the server down (logged)
            LOG.exception("%s: closing connection after an internal error", where)
            self._send_error(session, ErrorCode.INTERNAL)
        finally:
            with self._lock:
                self._sessions.pop(session, None)
                if not session.welcomed:
                    self._handshaking -= 1
            session.sock.close()

    def _send_error(self, session: Session, code: ErrorCode, reason: str | None = None) -> None:
        """An ERROR with a fixed code; a reason only for a peer that proved the token."""
        control = protocol.error_payload(code, reason if session.proven else None)
        try:
            protocol.send_frame(session.sock, MessageType.ERROR, control=control,
                                mac=session.send_mac if session.welcomed else None)
        except OSError:
            pass

    def _handshake(self, session: Session, deadline: float) -> tuple[list[HostedModel], FrameMac]:
        sock = session.sock
        sock.settimeout(max(deadline - time.monotonic(), 1e-3))
        nonce = secrets.token_bytes(protocol.NONCE_BYTES)
        challenge = protocol.encode_frame(MessageType.CHALLENGE, control={
            "protocol": protocol.VERSION, "nonce": nonce.hex(),
            "models": {name: hosted.weights_sha256 for name, hosted in self.models.items()}})
        protocol.send_buffers(sock, challenge)
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
                raise ProtocolError(f"model {name!r} is not hosted here "
                                    f"(hosted: {', '.join(self.models)})")
            if digest != self.models[name].weights_sha256:
                raise ProtocolError(f"model {name!r}: weights hash mismatch")
            hosted_list.append(self.models[name])
        with self._lock:  # counted before WELCOME leaves: the peer may reconnect at once
            session.welcomed = True
            self._handshaking -= 1
            self.stats.authenticated += 1
        protocol.send_frame(sock, MessageType.WELCOME, mac=session.send_mac, control={
            "models": list(requested), "device": str(self.device),
            "whole_model_s": {name: self.models[name].whole_model_s for name in requested}})
        LOG.info("%s: authenticated for %s", session.where, ", ".join(requested))
        return hosted_list, receive_mac

    def _serve_requests(self, session: Session, hosted_list: list[HostedModel],
                        receive_mac: FrameMac) -> None:
        # each frame is answered before the next is read, so one payload buffer serves all
        reader = protocol.FrameReader(session.sock, self.max_frame_bytes, reuse_payload=True,
                                      mac=receive_mac)
        while True:
            frame = reader.read()
            if frame.msg_type == MessageType.INFER:
                self._infer(session, frame, hosted_list)
            elif frame.msg_type == MessageType.PROBE:
                protocol.send_frame(session.sock, MessageType.PROBE_ACK, mac=session.send_mac,
                                    request_id=frame.request_id)
            else:
                raise ProtocolError(f"unexpected {frame.msg_type.name} after the handshake")

    def _infer(self, session: Session, frame: protocol.Frame,
               hosted_list: list[HostedModel]) -> None:
        if frame.tensor is None:
            raise ProtocolError("INFER without a tensor")
        if frame.model_id >= len(hosted_list):
            raise ProtocolError(f"model id {frame.model_id} not agreed in the handshake")
        hosted = hosted_list[frame.model_id]
        split = hosted.split
        if frame.cut >= split.num_segments:
            raise ProtocolError(f"{split.model_name}: cut {frame.cut} out of range "
                                f"0..{split.num_segments - 1}")
        expected = split.boundary_shape(frame.cut)
        if tuple(frame.tensor.shape[1:]) != expected[1:] or frame.tensor.dim() != len(expected):
            raise ProtocolError(f"{split.model_name}: cut {frame.cut} expects shape "
                                f"(N, {', '.join(map(str, expected[1:]))}), got "
                                f"{tuple(frame.tensor.shape)}")
        if not frame.tensor.is_floating_point():
            raise ProtocolError(f"INFER tensor must be floating point, got {frame.tensor.dtype}")
        import torch

        start = time.perf_counter()
        tensor = frame.tensor.to(self.device, dtype=torch.float32)
        output = split.run_range(frame.cut, split.num_segments, tensor)
        output = output.to("cpu")
        elapsed = time.perf_counter() - start
        protocol.send_frame(session.sock, MessageType.RESULT, mac=session.send_mac,
                            request_id=frame.request_id, model_id=frame.model_id, cut=frame.cut,
                            elapsed_s=elapsed, tensor=output)
        with self._lock:
            self.stats.requests += 1
            self.stats.compute_s.append(elapsed)
        LOG.info("%s: request %d %s cut %d: %d bytes in, compute %.2f ms", session.where,
                 frame.request_id, split.model_name, frame.cut, frame.tensor.nbytes,
                 elapsed * 1e3)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m device_bridge.server",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True, help="comma-separated model names")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--max-frame-mb", type=float, default=64.0)
    parser.add_argument("--handshake-timeout-s", type=float, default=HANDSHAKE_TIMEOUT_S,
                        help="deadline for the whole handshake (TLS included)")
    parser.add_argument("--idle-timeout-s", type=float, default=IDLE_TIMEOUT_S,
                        help="close an authenticated connection silent this long")
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS)
    parser.add_argument("--max-handshakes", type=int, default=MAX_HANDSHAKES,
                        help="connections still in their handshake, at most")
    parser.add_argument("--tls-cert", help="serve TLS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument("--log-level", default="INFO")
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
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        server = OffloadServer(models, token, args.host,
                               args.port, args.device, int(args.max_frame_mb * 2**20),
                               args.handshake_timeout_s, args.idle_timeout_s,
                               args.max_connections, args.max_handshakes, tls)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
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
