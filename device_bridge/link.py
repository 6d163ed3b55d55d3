"""One authenticated client connection to the offloading server.

``ServerLink.connect`` performs the mutual handshake (see ``device_bridge.protocol``): it
checks the server's protocol version and that it hosts the same weights, proves the token by
the tag of its AUTH, and accepts the server only if the WELCOME carries a valid tag under the
session key, i.e. the server knows the token too. The whole handshake (TLS included, with
``tls``) must finish within ``handshake_timeout_s``. Then a receiver thread delivers every
RESULT to ``on_result`` and reports the first error, bad tag or EOF once to ``on_failure``.
Uploads go through a ``ShapedSender`` (token bucket + latency) so the emulated uplink sits on
this socket; every frame in both directions carries its tag.
"""

from __future__ import annotations

import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from device_bridge import protocol
from device_bridge.protocol import FrameMac, MessageType
from device_bridge.shaping import ShapedSender
from device_bridge.tls import PinnedServerTls

if TYPE_CHECKING:  # torch loads with the first probe or tensor, not with the client's --help
    import torch

LOG = logging.getLogger("device_bridge.link")
# A small send buffer keeps sendall() close to the time the bytes really leave, so upload
# durations measure the link (on a real, kernel-shaped path) rather than buffer filling.
SEND_BUFFER_BYTES = 64 * 1024
HANDSHAKE_TIMEOUT_S = 10.0

ResultCallback = Callable[[int, "torch.Tensor", float, float], None]


class HandshakeError(ConnectionError):
    """The server refused us or is not the server we expect; the reason says why."""


class ServerLink:
    def __init__(self, host: str, port: int, token: bytes, model_hashes: dict[str, str],
                 sender: ShapedSender, on_result: ResultCallback,
                 on_failure: Callable[[ServerLink, str], None],
                 connect_timeout_s: float = 5.0, tls: PinnedServerTls | None = None,
                 handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S):
        self.host, self.port = host, port
        self.token = token
        self.model_hashes = dict(model_hashes)
        self.sender = sender
        self.on_result = on_result
        self.on_failure = on_failure
        self.connect_timeout_s = connect_timeout_s
        self.tls = tls
        self.handshake_timeout_s = handshake_timeout_s
        self.model_ids: dict[str, int] = {}
        self.server_device = ""
        self.server_whole_model_s: dict[str, float] = {}
        self.sock: socket.socket | None = None
        self.receiver: threading.Thread | None = None
        self._send_mac: FrameMac | None = None
        self._receive_mac: FrameMac | None = None
        self._failed = threading.Event()
        self._send_lock = threading.Lock()
        self._probe_done = threading.Event()

    @property
    def alive(self) -> bool:
        return self.sock is not None and not self._failed.is_set()

    def connect(self) -> ServerLink:
        """Raises HandshakeError when the server refuses us or fails to prove the token,
        OSError when it cannot be reached in time."""
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            deadline = time.monotonic() + self.handshake_timeout_s
            if self.tls is not None:
                try:
                    sock = self.tls.wrap(sock, deadline)
                except ssl.SSLCertVerificationError as error:
                    raise HandshakeError(f"TLS: {error}") from None
            self._handshake(sock, deadline)
        except protocol.ProtocolError as error:
            sock.close()
            raise HandshakeError(f"bad handshake from the server: {error}") from None
        except BaseException:  # deliberate: cleanup, re-raised
            sock.close()
            raise
        sock.settimeout(None)
        self.sock = sock
        self.receiver = threading.Thread(target=self._receive_loop, name="link-receiver",
                                         daemon=True)
        self.receiver.start()
        return self

    def _handshake(self, sock: socket.socket, deadline: float) -> None:
        challenge = protocol.read_frame(sock, protocol.MAX_CONTROL_BYTES, deadline)
        if challenge.msg_type == MessageType.ERROR:
            raise HandshakeError(f"server refused: {protocol.describe_error(challenge)}")
        if challenge.msg_type != MessageType.CHALLENGE:
            raise HandshakeError(f"expected CHALLENGE, got {challenge.msg_type.name}")
        offer = challenge.json()
        if offer.get("protocol") != protocol.VERSION:
            raise HandshakeError(f"server speaks protocol {offer.get('protocol')}, "
                                 f"we speak {protocol.VERSION}")
        hosted = offer.get("models")
        hosted = hosted if isinstance(hosted, dict) else {}
        for name, digest in self.model_hashes.items():
            if name not in hosted:
                raise HandshakeError(f"server does not host {name!r} (hosts: "
                                     f"{', '.join(map(str, hosted)) or 'nothing'})")
            if hosted[name] != digest:
                raise HandshakeError(f"{name}: server weights differ from ours "
                                     f"({str(hosted[name])[:12]} != {digest[:12]})")
        server_nonce = protocol.parse_nonce(offer.get("nonce"))
        client_nonce = secrets.token_bytes(protocol.NONCE_BYTES)
        to_server, to_client = protocol.session_keys(self.token, server_nonce, client_nonce,
                                                     challenge.payload)
        self._send_mac, self._receive_mac = FrameMac(to_server), FrameMac(to_client)
        protocol.send_frame(sock, MessageType.AUTH, mac=self._send_mac, control={
            "nonce": client_nonce.hex(), "models": self.model_hashes})
        reply = protocol.read_frame(sock, protocol.MAX_CONTROL_BYTES, deadline)
        if reply.msg_type == MessageType.ERROR:
            raise HandshakeError(f"server refused: {protocol.describe_error(reply)}")
        if reply.msg_type != MessageType.WELCOME:
            raise HandshakeError(f"expected WELCOME, got {reply.msg_type.name}")
        try:
            self._receive_mac.check(reply)
        except protocol.IntegrityError:
            raise HandshakeError("the server did not prove it knows the token (WELCOME tag "
                                 "missing or wrong): not our server") from None
        welcome = reply.json()
        self.model_ids = {name: i for i, name in enumerate(welcome.get("models", []))}
        if set(self.model_ids) != set(self.model_hashes):
            raise HandshakeError(f"server agreed to {sorted(self.model_ids)}, "
                                 f"we asked for {sorted(self.model_hashes)}")
        self.server_device = str(welcome.get("device", ""))
        self.server_whole_model_s = {k: float(v) for k, v in
                                     (welcome.get("whole_model_s") or {}).items()}

    def send_infer(self, request_id: int, model: str, cut: int, tensor: torch.Tensor,
                   ready_at: float | None = None) -> int:
        """Upload one cut tensor through the shaper (``ready_at``: when it was ready, so the
        emulated uplink starts it then if it was free); returns bytes sent. Raises OSError."""
        buffers = protocol.encode_frame(MessageType.INFER, request_id=request_id,
                                        model_id=self.model_ids[model], cut=cut, tensor=tensor,
                                        tagged=True)
        return self._send(buffers, ready_at)

    def probe(self, payload_bytes: int, timeout_s: float = 30.0) -> float:
        """Seconds from sending a PROBE of ``payload_bytes`` until its PROBE_ACK arrives."""
        import torch

        payload = torch.zeros(payload_bytes, dtype=torch.uint8)
        buffers = protocol.encode_frame(MessageType.PROBE, tensor=payload, tagged=True)
        self._probe_done.clear()
        start = time.perf_counter()
        self._send(buffers)
        if not self._probe_done.wait(timeout_s):
            raise TimeoutError(f"no PROBE_ACK within {timeout_s} s")
        if self._failed.is_set():
            raise ConnectionError("link failed during the probe")
        return time.perf_counter() - start

    def _send(self, buffers: list[bytes | memoryview], ready_at: float | None = None) -> int:
        if not self.alive:
            raise ConnectionError("link is down")
        try:
            with self._send_lock:  # tags are numbered in the order frames leave
                return self.sender.send_message(self.sock, buffers, self._send_mac, ready_at)
        except OSError as error:
            self.fail(f"send failed: {error}")
            raise

    def _receive_loop(self) -> None:
        # results outlive the read: fresh buffers
        reader = protocol.FrameReader(self.sock, mac=self._receive_mac)
        try:
            while True:
                frame = reader.read()
                if frame.msg_type == MessageType.RESULT and frame.tensor is not None:
                    self.on_result(frame.request_id, frame.tensor, frame.elapsed_s,
                                   time.perf_counter())
                elif frame.msg_type == MessageType.PROBE_ACK:
                    self._probe_done.set()
                elif frame.msg_type == MessageType.ERROR:
                    self.fail(f"server error: {protocol.describe_error(frame)}")
                    return
                else:
                    self.fail(f"unexpected {frame.msg_type.name} from the server")
                    return
        except (OSError, protocol.ProtocolError) as error:
            self.fail(f"receive failed: {error}")

    def fail(self, reason: str) -> None:
        if self._failed.is_set():
            return
        self._failed.set()
        self._probe_done.set()
        LOG.warning("link to %s:%d down: %s", self.host, self.port, reason)
        self.close()
        self.on_failure(self, reason)

    def close(self) -> None:
        """Close the socket; after a deliberate close no failure is reported."""
        self._failed.set()
        sock = self.sock
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        receiver = self.receiver
        if receiver is not None and receiver is not threading.current_thread():
            receiver.join(5.0)
