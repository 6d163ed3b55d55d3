"""One authenticated client connection to the offloading server.

``ServerLink.connect`` performs the mutual handshake (see ``device_bridge.protocol``): it
checks the server's protocol version and that it hosts the same weights, proves the token by
the tag of its AUTH, and accepts the server only if the WELCOME carries a valid tag under the
session key, i.e. the server knows the token too. The whole handshake (TLS included, with
``tls``) must finish within ``handshake_timeout_s``; every field the server sends is checked,
and anything malformed, missing or refused raises ``HandshakeError`` (never another decode
error). Then a receiver thread delivers every RESULT to ``on_result`` and reports the first
error, bad tag, malformed or unexpected frame, stall or EOF once to ``on_failure``; so does
any exception that would end the receiver. A RESULT is admitted from its header, before its
payload is read, only for a request in flight, as float32 of the shape that request's output
has (``output_shapes``). Reads and writes that make no progress for ``stall_timeout_s`` fail
the link. Uploads go through a ``ShapedSender`` (token bucket + latency) so the emulated
uplink sits on this socket. On plain TCP every frame in both directions carries its tag;
inside TLS the frames after the handshake go untagged, as the CHALLENGE offers, and a CHALLENGE
offering untagged frames on a connection that is not TLS is refused (a downgrade).
"""

from __future__ import annotations

import logging
import math
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from device_bridge import protocol
from device_bridge.protocol import DType, FrameMac, Header, MessageType, ProtocolError, peer_text
from device_bridge.shaping import ShapedSender
from device_bridge.tls import PinnedServerTls

if TYPE_CHECKING:  # torch loads with the first probe or tensor, not with the client's --help
    import torch

LOG = logging.getLogger("device_bridge.link")
# A small send buffer keeps sendall() close to the time the bytes really leave, so upload
# durations measure the link (on a real, kernel-shaped path) rather than buffer filling.
SEND_BUFFER_BYTES = 64 * 1024
HANDSHAKE_TIMEOUT_S = 10.0
STALL_TIMEOUT_S = 30.0
MAX_DEVICE_CHARS = 64

ResultCallback = Callable[[int, "torch.Tensor", float, float], None]


class HandshakeError(ConnectionError):
    """The server refused us or is not the server we expect; the reason says why."""


def _is_seconds(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # an integer too large for a float
        return False


class ServerLink:
    def __init__(self, host: str, port: int, token: bytes, model_hashes: dict[str, str],
                 sender: ShapedSender, on_result: ResultCallback,
                 on_failure: Callable[[ServerLink, str], None],
                 connect_timeout_s: float = 5.0, tls: PinnedServerTls | None = None,
                 handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
                 output_shapes: Mapping[str, tuple[int, ...]] | None = None,
                 stall_timeout_s: float = STALL_TIMEOUT_S):
        self.host, self.port = host, port
        self.token = token
        self.model_hashes = dict(model_hashes)
        self.sender = sender
        self.on_result = on_result
        self.on_failure = on_failure
        self.connect_timeout_s = connect_timeout_s
        self.tls = tls
        self.handshake_timeout_s = handshake_timeout_s
        # per model, the output shape of a batch of one; without it a RESULT is checked for
        # its request, dtype and batch only
        self.output_shapes = dict(output_shapes or {})
        self.stall_timeout_s = stall_timeout_s
        self.model_ids: dict[str, int] = {}
        self.server_device = ""
        self.server_whole_model_s: dict[str, float] = {}
        self.frame_tags: bool | None = None  # agreed in the handshake
        self.sock: socket.socket | None = None
        self.receiver: threading.Thread | None = None
        self._send_mac: FrameMac | None = None
        self._receive_mac: FrameMac | None = None
        self._failed = threading.Event()
        self._send_lock = threading.Lock()
        self._probe_done = threading.Event()
        self._expected_lock = threading.Lock()
        # request id -> (RESULT shape, or only its batch when the output shape is unknown)
        self._expected: dict[int, tuple[tuple[int, ...], bool]] = {}

    @property
    def alive(self) -> bool:
        return self.sock is not None and not self._failed.is_set()

    def connect(self) -> ServerLink:
        """Raises HandshakeError when the server refuses us, fails to prove the token or
        sends anything malformed, OSError when it cannot be reached in time."""
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
        except ProtocolError as error:
            sock.close()
            raise HandshakeError(f"bad handshake from the server: {error}") from None
        except BaseException:  # deliberate: cleanup, re-raised
            sock.close()
            raise
        # fixed from now on: the receiver and the uploader share the socket
        sock.settimeout(self.stall_timeout_s)
        self.sock = sock
        self.receiver = threading.Thread(target=self._receive_loop, name="link-receiver",
                                         daemon=True)
        self.receiver.start()
        return self

    def _handshake(self, sock: socket.socket, deadline: float) -> None:
        challenge = protocol.read_frame(sock, protocol.MAX_CONTROL_BYTES, deadline)
        server_nonce, frame_tags = self._read_offer(challenge)
        client_nonce = secrets.token_bytes(protocol.NONCE_BYTES)
        to_server, to_client = protocol.session_keys(self.token, server_nonce, client_nonce,
                                                     challenge.payload)
        self._send_mac, self._receive_mac = FrameMac(to_server), FrameMac(to_client)
        protocol.send_frame(sock, MessageType.AUTH, mac=self._send_mac, deadline=deadline,
                            control={"nonce": client_nonce.hex(), "models": self.model_hashes})
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
        self._accept_welcome(reply.json(), frame_tags)
        if not frame_tags:  # TLS records protect every later frame
            self._send_mac = self._receive_mac = None
        self.frame_tags = frame_tags

    def _read_offer(self, challenge: protocol.Frame) -> tuple[bytes, bool]:
        """Check the CHALLENGE (version, our models with our weights, the channel); its nonce
        and whether frames are tagged."""
        if challenge.msg_type == MessageType.ERROR:
            raise HandshakeError(f"server refused: {protocol.describe_error(challenge)}")
        if challenge.msg_type != MessageType.CHALLENGE:
            raise HandshakeError(f"expected CHALLENGE, got {challenge.msg_type.name}")
        offer = challenge.json()
        if offer.get("protocol") != protocol.VERSION:
            raise HandshakeError(f"server speaks protocol {peer_text(offer.get('protocol'))}, "
                                 f"we speak {protocol.VERSION}")
        hosted = offer.get("models")
        if not isinstance(hosted, dict):
            raise ProtocolError(f"CHALLENGE models must be an object, got {peer_text(hosted)}")
        for name, digest in self.model_hashes.items():
            if name not in hosted:
                raise HandshakeError(f"server does not host {name!r} (hosts: "
                                     f"{peer_text(sorted(hosted), 200)})")
            if hosted[name] != digest:
                raise HandshakeError(f"{name}: server weights differ from ours "
                                     f"({peer_text(hosted[name], 20)} != {digest[:12]})")
        return protocol.parse_nonce(offer.get("nonce")), self._offered_frame_tags(offer)

    def _offered_frame_tags(self, offer: dict[str, Any]) -> bool:
        """The CHALLENGE's ``frame_tags``: untagged frames only inside our own TLS connection
        (an untagged offer on plain TCP is a downgrade, refused before AUTH leaves)."""
        frame_tags = offer.get("frame_tags")
        if not isinstance(frame_tags, bool):
            raise ProtocolError(f"CHALLENGE frame_tags must be true or false, got "
                                f"{peer_text(frame_tags)}")
        if not frame_tags and self.tls is None:
            raise HandshakeError("the server offered untagged frames on a connection without "
                                 "TLS (a downgrade): refused")
        return frame_tags

    def _accept_welcome(self, welcome: dict[str, Any], frame_tags: bool) -> None:
        """Take the model ids, device and whole-model times of a WELCOME whose tag checked,
        which must confirm the channel the CHALLENGE offered."""
        models = welcome.get("models")
        if not (isinstance(models, list) and all(isinstance(name, str) for name in models)
                and sorted(models) == sorted(self.model_hashes)):
            raise HandshakeError(f"server agreed to {peer_text(models, 200)}, we asked for "
                                 f"{sorted(self.model_hashes)}")
        device = welcome.get("device", "")
        if not isinstance(device, str) or len(device) > MAX_DEVICE_CHARS:
            raise ProtocolError(f"WELCOME device must be a short string, got "
                                f"{peer_text(device)}")
        seconds = welcome.get("whole_model_s") or {}
        if not (isinstance(seconds, dict) and all(
                name in self.model_hashes and _is_seconds(value)
                for name, value in seconds.items())):
            raise ProtocolError(f"WELCOME whole_model_s must map our models to seconds, got "
                                f"{peer_text(seconds)}")
        if welcome.get("frame_tags") is not frame_tags:
            raise HandshakeError(f"WELCOME frame_tags {peer_text(welcome.get('frame_tags'))} "
                                 f"differs from the CHALLENGE's {frame_tags}")
        self.model_ids = {name: i for i, name in enumerate(models)}
        self.server_device = device
        self.server_whole_model_s = {name: float(value) for name, value in seconds.items()}

    def send_infer(self, request_id: int, model: str, cut: int, tensor: torch.Tensor,
                   ready_at: float | None = None) -> int:
        """Upload one cut tensor through the shaper (``ready_at``: when it was ready, so the
        emulated uplink starts it then if it was free); returns bytes sent. Raises OSError."""
        buffers = protocol.encode_frame(MessageType.INFER, request_id=request_id,
                                        model_id=self.model_ids[model], cut=cut, tensor=tensor,
                                        tagged=self._send_mac is not None)
        batch, output = tuple(tensor.shape[:1]), self.output_shapes.get(model)
        expected = (batch + tuple(output[1:]), True) if output else (batch, False)
        with self._expected_lock:  # before it leaves: its RESULT may come back at once
            self._expected[request_id] = expected
        return self._send(buffers, ready_at)

    def probe(self, payload_bytes: int, timeout_s: float = 30.0) -> float:
        """Seconds from sending a PROBE of ``payload_bytes`` until its PROBE_ACK arrives."""
        import torch

        payload = torch.zeros(payload_bytes, dtype=torch.uint8)
        buffers = protocol.encode_frame(MessageType.PROBE, tensor=payload,
                                        tagged=self._send_mac is not None)
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

    def _admit(self, header: Header) -> None:
        """Refuse a frame from its header, before its payload is read: only a RESULT for a
        request in flight, float32 of that request's output shape, a bare PROBE_ACK or an
        ERROR may come from the server."""
        kind = header.msg_type
        if kind == MessageType.RESULT:
            with self._expected_lock:
                expected = self._expected.pop(header.request_id, None)
            if expected is None:
                raise ProtocolError(f"RESULT for request {header.request_id}, not in flight")
            shape, (wanted, exact) = header.shape, expected
            if header.dtype != DType.FLOAT32 or (
                    shape != wanted if exact else shape[:len(wanted)] != wanted):
                raise ProtocolError(f"RESULT for request {header.request_id} is "
                                    f"{header.dtype.name.lower()} {shape}; expected float32 "
                                    f"{wanted if exact else (*wanted, '...')}")
            if not _is_seconds(header.elapsed_s):
                raise ProtocolError(f"RESULT elapsed_s {header.elapsed_s} is not a duration")
        elif kind == MessageType.PROBE_ACK:
            if header.dtype != DType.NONE or header.payload_len:
                raise ProtocolError("PROBE_ACK with a payload")
        elif kind != MessageType.ERROR:
            raise ProtocolError(f"unexpected {kind.name} from the server")

    def _receive_loop(self) -> None:
        try:
            self._receive_frames()
        except (OSError, ProtocolError) as error:
            self.fail(f"receive failed: {error}")
        except Exception as error:  # deliberate: a dead receiver must fail the link at once
            LOG.error("link receiver crashed", exc_info=error)
            self.fail(f"receiver crashed: {type(error).__name__}: {error}")
        finally:
            self.fail("receiver stopped")  # a no-op once failed or closed

    def _receive_frames(self) -> None:
        # results outlive the read: fresh buffers
        reader = protocol.FrameReader(self.sock, mac=self._receive_mac, admit=self._admit,
                                      untagged_channel=self._receive_mac is None)
        while True:
            try:
                frame = reader.read()
            except protocol.IdleTimeout:
                continue  # nothing to read is fine; a missing result is the watchdog's
            if frame.msg_type == MessageType.RESULT:
                self.on_result(frame.request_id, frame.tensor, frame.elapsed_s,
                               time.perf_counter())
            elif frame.msg_type == MessageType.PROBE_ACK:
                self._probe_done.set()
            else:
                self.fail(f"server error: {protocol.describe_error(frame)}")
                return

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
