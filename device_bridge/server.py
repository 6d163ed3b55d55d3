"""The offloading server: runs the suffix of a model after any cut point, for many clients.

    python -m device_bridge.server --models resnet18,mobilenet_v2 --port 0 --token-file F
        [--host 127.0.0.1] [--device auto|cpu|cuda] [--threads N] [--max-frame-mb 64]

Prints ``listening on HOST:PORT device=DEVICE`` once ready (``--port 0`` picks a free port).
Each connection gets its own thread: CHALLENGE / AUTH / WELCOME handshake (see
``device_bridge.protocol``), then INFER frames answered by RESULT frames that carry the server
compute time. A malformed, oversized or unauthenticated frame, an unknown model or a cut out of
range gets an ERROR frame and closes that connection only, with the reason logged. Every request
is logged with its model, cut, bytes and compute time.
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

import torch

from device_bridge import protocol
from device_bridge.graph_split import SUPPORTED_MODELS, SplitModel, weights_hash
from device_bridge.protocol import MessageType, ProtocolError

LOG = logging.getLogger("device_bridge.server")
HANDSHAKE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 600.0
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
    rejected: int = 0
    requests: int = 0
    compute_s: list[float] = field(default_factory=list)

    def summary(self) -> str:
        median_ms = statistics.median(self.compute_s) * 1e3 if self.compute_s else 0.0
        return (f"connections={self.connections} authenticated={self.authenticated} "
                f"rejected={self.rejected} requests={self.requests} "
                f"median_compute_ms={median_ms:.2f}")


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    return device


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class OffloadServer:
    """Hosts models and serves suffix requests on a TCP socket; ``start()`` returns at once."""

    def __init__(self, models: Sequence[str], token: bytes, host: str = "127.0.0.1",
                 port: int = 0, device: str = "auto",
                 max_frame_bytes: int = protocol.DEFAULT_MAX_FRAME_BYTES,
                 handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S):
        if not models:
            raise ValueError("the server needs at least one model")
        for name in models:
            if name not in SUPPORTED_MODELS:
                raise ValueError(f"unknown model {name!r}; supported: {', '.join(SUPPORTED_MODELS)}")
        self.token = token
        self.device = pick_device(device)
        if self.device.type == "cuda":
            # full fp32 so server results match the device's CPU results to rounding
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.max_frame_bytes = max_frame_bytes
        self.handshake_timeout_s = handshake_timeout_s
        self.stats = ServerStats()
        self._stats_lock = threading.Lock()
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
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()

    def _time_models(self) -> None:
        """Median whole-model time per model on the serving device, round-robin over the
        models (as mixed requests arrive), reported to clients in WELCOME for planning."""
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

    def start(self) -> OffloadServer:
        thread = threading.Thread(target=self._accept_loop, name="accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def close(self) -> None:
        self._closing.set()
        self._listener.close()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

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
            with self._stats_lock:
                self.stats.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn, peer),
                                      name=f"conn-{peer[1]}", daemon=True)
            thread.start()

    def _serve(self, conn: socket.socket, peer: tuple) -> None:
        self._connections.add(conn)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        where = f"{peer[0]}:{peer[1]}"
        try:
            model_ids = self._handshake(conn, where)
            conn.settimeout(IDLE_TIMEOUT_S)
            # each frame is answered before the next is read, so one payload buffer serves all
            reader = protocol.FrameReader(conn, self.max_frame_bytes, reuse_payload=True)
            while True:
                frame = reader.read()
                if frame.msg_type == MessageType.INFER:
                    self._infer(conn, frame, model_ids, where)
                elif frame.msg_type == MessageType.PROBE:
                    protocol.send_frame(conn, MessageType.PROBE_ACK, request_id=frame.request_id)
                else:
                    raise ProtocolError(f"unexpected {frame.msg_type.name} after the handshake")
        except protocol.ConnectionClosed:
            LOG.info("%s: closed by peer", where)
        except (ProtocolError, ValueError) as error:
            LOG.warning("%s: closing connection: %s", where, error)
            self._send_error(conn, str(error))
        except TimeoutError:
            LOG.warning("%s: closing connection: timed out", where)
            self._send_error(conn, "timed out")
        except OSError as error:
            if not self._closing.is_set():
                LOG.warning("%s: socket error: %s", where, error)
        except Exception as error:  # one bad request never takes the server down
            LOG.exception("%s: closing connection after an internal error", where)
            self._send_error(conn, f"internal error: {type(error).__name__}: {error}")
        finally:
            self._connections.discard(conn)
            conn.close()

    @staticmethod
    def _send_error(conn: socket.socket, reason: str) -> None:
        try:
            protocol.send_frame(conn, MessageType.ERROR, control={"reason": reason})
        except OSError:
            pass

    def _handshake(self, conn: socket.socket, where: str) -> list[HostedModel]:
        conn.settimeout(self.handshake_timeout_s)
        nonce = secrets.token_bytes(32)
        protocol.send_frame(conn, MessageType.CHALLENGE, control={
            "protocol": protocol.VERSION, "nonce": nonce.hex(),
            "models": {name: hosted.weights_sha256 for name, hosted in self.models.items()}})
        frame = protocol.read_frame(conn, protocol.MAX_CONTROL_BYTES)
        if frame.msg_type != MessageType.AUTH:
            raise ProtocolError(f"expected AUTH, got {frame.msg_type.name}")
        auth = frame.json()
        if not protocol.check_mac(self.token, nonce, auth.get("mac")):
            with self._stats_lock:
                self.stats.rejected += 1
            raise ProtocolError("authentication failed (wrong token)")
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
        protocol.send_frame(conn, MessageType.WELCOME, control={
            "models": list(requested), "device": str(self.device),
            "whole_model_s": {name: self.models[name].whole_model_s for name in requested}})
        with self._stats_lock:
            self.stats.authenticated += 1
        LOG.info("%s: authenticated for %s", where, ", ".join(requested))
        return hosted_list

    def _infer(self, conn: socket.socket, frame: protocol.Frame, hosted_list: list[HostedModel],
               where: str) -> None:
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
        start = time.perf_counter()
        tensor = frame.tensor.to(self.device, dtype=torch.float32)
        output = split.run_range(frame.cut, split.num_segments, tensor)
        output = output.to("cpu")
        elapsed = time.perf_counter() - start
        protocol.send_frame(conn, MessageType.RESULT, request_id=frame.request_id,
                            model_id=frame.model_id, cut=frame.cut, elapsed_s=elapsed,
                            tensor=output)
        with self._stats_lock:
            self.stats.requests += 1
            self.stats.compute_s.append(elapsed)
        LOG.info("%s: request %d %s cut %d: %d bytes in, compute %.2f ms", where,
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
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        token = protocol.read_token_file(args.token_file)
        server = OffloadServer([m for m in args.models.split(",") if m], token, args.host,
                               args.port, args.device, int(args.max_frame_mb * 2**20))
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
