"""Issue 16: mutual authentication, per-frame integrity and bounded resources, each against
a real server on 127.0.0.1 and each checked for threads and sockets left behind."""

import contextlib
import json
import secrets
import select
import shutil
import socket
import ssl
import threading
import time
import tracemalloc

import pytest
import torch

from device_bridge import protocol
from device_bridge.link import HandshakeError, ServerLink
from device_bridge.protocol import FrameMac, MessageType
from device_bridge.server import OffloadServer, ServerLimits
from device_bridge.shaping import ShapedSender
from device_bridge.tls import PinnedServerTls, ServerTls, self_signed_pair

from .conftest import TOKEN
from .fake_server import FakeServer, send_challenge
from .wire import LeakCheck, authenticated, closing_error, raw_connection, send_auth


@pytest.fixture()
def leaks(server):
    check = LeakCheck(server)
    yield check
    check.assert_clean()


@pytest.fixture(scope="module")
def small_server(server):
    """Caps of 3 connections, 2 of them in their handshake; idle timeout 2 s."""
    limits = ServerLimits(handshake_timeout_s=5.0, idle_timeout_s=2.0, max_connections=3,
                          max_handshakes=2, max_handshakes_per_address=2)
    instance = OffloadServer(("alexnet",), TOKEN, device="cpu", limits=limits).start()
    yield instance
    instance.close()


def _link(server, results=None, failures=None, tls=None, token=TOKEN,
          model="resnet18") -> ServerLink:
    results = results if results is not None else {}
    arrived = threading.Condition()

    def on_result(request_id, tensor, elapsed_s, when):
        with arrived:
            results[request_id] = tensor
            arrived.notify_all()

    link = ServerLink("127.0.0.1", server.port, token, {model: server.models[model].weights_sha256},
                      ShapedSender(None), on_result,
                      lambda link, reason: (failures if failures is not None else []).append(reason),
                      tls=tls)
    link.results, link.arrived = results, arrived
    return link.connect()


def _result(link, request_id, timeout_s=30.0) -> torch.Tensor:
    with link.arrived:
        assert link.arrived.wait_for(lambda: request_id in link.results, timeout_s)
    return link.results[request_id]


def _late_cut(server, model="resnet18") -> tuple[int, torch.Tensor]:
    """The last interior cut of ``model`` and a tensor of its shape (small, fast to serve)."""
    split = server.models[model].split
    cut = split.num_segments - 1
    return cut, torch.randn(split.boundary_shape(cut))


# ---- handshake deadline and caps ---------------------------------------------------------
def test_trickling_handshake_is_dropped_at_the_deadline(server, leaks):
    sock, challenge = raw_connection(server)
    auth = protocol.encode_frame(MessageType.AUTH, control={"nonce": "00" * 32}, tagged=True)
    start = time.monotonic()
    for byte in b"".join(auth):  # one byte every 0.25 s: no single read ever waits 2 s
        try:
            sock.send(bytes([byte]))
        except OSError:
            break
        if select.select([sock], [], [], 0.25)[0] or time.monotonic() - start > 10:
            break
    assert closing_error(sock) == {"code": "handshake_timeout"}
    assert time.monotonic() - start < server.limits.handshake_timeout_s + 1.0


def test_connection_cap_holds_and_refuses_with_a_reason(small_server):
    check = LeakCheck(small_server)
    first, first_challenge = raw_connection(small_server)
    second, _ = raw_connection(small_server)
    over_handshakes = socket.create_connection(("127.0.0.1", small_server.port), timeout=10)
    assert closing_error(over_handshakes) == {"code": "server_busy"}  # 2 in their handshake
    send_mac, receive_mac = send_auth(first, first_challenge, {
        "alexnet": small_server.models["alexnet"].weights_sha256})
    receive_mac.check(protocol.read_frame(first))  # WELCOME: one handshake slot free again
    third, _ = raw_connection(small_server)
    with pytest.raises(HandshakeError, match="server_busy"):  # 3 connections open
        _link(small_server, model="alexnet")
    # the authenticated connection is still served
    cut, tensor = _late_cut(small_server, "alexnet")
    protocol.send_frame(first, MessageType.INFER, mac=send_mac, request_id=7, cut=cut,
                        tensor=tensor)
    reply = protocol.FrameReader(first, mac=receive_mac).read()
    assert reply.msg_type == MessageType.RESULT and reply.request_id == 7
    for sock in (first, second, third):
        sock.close()
    check.assert_clean()
    link = _link(small_server, model="alexnet")  # room again
    link.close()
    assert small_server.stats.refused_busy == 2
    check.assert_clean()


def test_idle_authenticated_connection_is_closed_with_a_tagged_error(small_server):
    check = LeakCheck(small_server)
    sock, _, receive_mac = authenticated(small_server, "alexnet")
    start = time.monotonic()
    error = protocol.FrameReader(sock, mac=receive_mac).read()  # tag checked
    waited = time.monotonic() - start
    sock.close()
    assert error.json() == {"code": "idle_timeout"}
    assert small_server.limits.idle_timeout_s <= waited < small_server.limits.idle_timeout_s + 2.0
    check.assert_clean()


# ---- mutual authentication ---------------------------------------------------------------
class RogueServer:
    """Knows the public weight hashes but not the token; answers every INFER with zeros."""

    def __init__(self, hashes: dict[str, str], welcome_key: bytes | None):
        self.hashes, self.welcome_key = hashes, welcome_key
        self.infers = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            nonce = secrets.token_bytes(32)
            challenge = protocol.encode_frame(MessageType.CHALLENGE, control={
                "protocol": protocol.VERSION, "nonce": nonce.hex(), "models": self.hashes,
                "frame_tags": True})
            protocol.send_buffers(conn, challenge)
            auth = protocol.read_frame(conn)
            models = list(auth.json()["models"])
            mac = None
            if self.welcome_key is not None:  # keys from a token guess
                client_nonce = bytes.fromhex(auth.json()["nonce"])
                mac = FrameMac(protocol.session_keys(self.welcome_key, nonce, client_nonce,
                                                     bytes(challenge[1]))[1])
            protocol.send_frame(conn, MessageType.WELCOME, mac=mac,
                                control={"models": models, "device": "cpu"})
            try:
                while True:
                    frame = protocol.read_frame(conn)
                    self.infers += frame.msg_type == MessageType.INFER
                    protocol.send_frame(conn, MessageType.RESULT, request_id=frame.request_id,
                                        tensor=torch.zeros(1, 1000))
            except (OSError, protocol.ProtocolError):
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


@pytest.mark.parametrize("welcome_key", [None, b"guessed-token-0123456789-0123456789"],
                         ids=["untagged-welcome", "wrong-token"])
def test_rogue_server_without_the_token_is_refused(server, welcome_key):
    check = LeakCheck()
    rogue = RogueServer({"resnet18": server.models["resnet18"].weights_sha256}, welcome_key)
    link = ServerLink("127.0.0.1", rogue.port, TOKEN,
                      {"resnet18": server.models["resnet18"].weights_sha256},
                      ShapedSender(None), lambda *a: None, lambda *a: None)
    with pytest.raises(HandshakeError, match="did not prove it knows the token"):
        link.connect()
    rogue.close()
    assert rogue.infers == 0  # no tensor ever reached it
    check.assert_clean()


def test_wrong_token_client_gets_only_a_fixed_code(server, leaks):
    sock, challenge = raw_connection(server)
    send_auth(sock, challenge, {"resnet18": server.models["resnet18"].weights_sha256},
              token=b"not-the-token-0123456789-0123456789")
    assert closing_error(sock) == {"code": "auth_failed"}


@pytest.mark.parametrize("payload", [
    b"[" * 20000 + b"]" * 20000,  # a RecursionError in json.loads
    b'{"nonce": ' + b"1" * 5000 + b"}",  # a ValueError: more than 4300 digits
], ids=["deep-nesting", "huge-integer"])
def test_internal_errors_of_unauthenticated_peers_are_not_echoed(server, leaks, payload):
    sock, _ = raw_connection(server)
    header = protocol.HEADER.pack(protocol.MAGIC, protocol.VERSION, int(MessageType.AUTH), 0,
                                  0, 0, 0, 0.0, 0, 0, *[0] * 8, len(payload))
    sock.sendall(header + payload)
    assert closing_error(sock) == {"code": "bad_frame"}  # not internal_error


# ---- per-frame integrity -----------------------------------------------------------------
def _tampered(kind: str, server) -> tuple[socket.socket, FrameMac, list[bytes]]:
    """An authenticated connection and the byte strings to send on it, in order."""
    sock, send_mac, receive_mac = authenticated(server)
    cut, tensor = _late_cut(server)

    def wire(request_id: int, mac: FrameMac | None = send_mac) -> bytes:
        buffers = protocol.encode_frame(MessageType.INFER, request_id=request_id, cut=cut,
                                        tensor=tensor, tagged=mac is not None)
        return b"".join(bytes(b) for b in buffers) + (mac.tag(buffers) if mac else b"")

    if kind == "reordered":  # the second frame arrives first
        wire(1)
        return sock, receive_mac, [wire(2)]
    if kind == "replayed":
        frame = wire(1)
        return sock, receive_mac, [frame, frame]
    if kind == "foreign":  # a valid frame of another session
        other, other_mac, _ = authenticated(server)
        frame = wire(1, other_mac)
        other.close()
        return sock, receive_mac, [frame]
    if kind == "untagged":
        return sock, receive_mac, [wire(1, None)]
    frame = bytearray(wire(1))
    position = {"header-bit": 13, "payload-bit": 70 + 100, "tag-bit": len(frame) - 1}[kind]
    frame[position] ^= 0x04
    return sock, receive_mac, [bytes(frame)]


@pytest.mark.parametrize("kind", ["header-bit", "payload-bit", "tag-bit", "replayed",
                                  "reordered", "foreign", "untagged"])
def test_tampered_replayed_reordered_and_foreign_frames_are_rejected(server, leaks, kind):
    failures = server.stats.integrity_failures
    sock, receive_mac, frames = _tampered(kind, server)
    reader = protocol.FrameReader(sock, mac=receive_mac)
    for frame in frames[:-1]:  # the genuine first frame of a replay is served
        sock.sendall(frame)
        assert reader.read().msg_type == MessageType.RESULT
    sock.sendall(frames[-1])
    error = reader.read()  # the server's ERROR is itself tagged
    assert error.msg_type == MessageType.ERROR and error.json()["code"] == "integrity"
    closing_error(sock)
    assert server.stats.integrity_failures == failures + 1


# ---- payloads ----------------------------------------------------------------------------
def test_empty_batch_round_trips_through_the_server(server, leaks):
    link = _link(server)
    split = server.models["resnet18"].split
    link.send_infer(3, "resnet18", 0, torch.empty(0, *split.input_shape[1:]))
    link.send_infer(4, "resnet18", 9, torch.empty(0, *split.boundary_shape(9)[1:]))
    assert _result(link, 3).shape == (0, 1000) and _result(link, 4).shape == (0, 1000)
    link.close()


def test_lying_header_reserves_no_memory_on_the_server(server, leaks):
    sock, send_mac, _ = authenticated(server)
    claimed = 15 * 2**20  # under the fixture's 16 MiB frame limit
    header = protocol.HEADER.pack(protocol.MAGIC, protocol.VERSION, int(MessageType.INFER),
                                  protocol.FLAG_TAGGED, 0, 0, 1, 0.0,
                                  int(protocol.DType.UINT8), 1, claimed, *[0] * 7, claimed)
    tracemalloc.start()
    try:
        sock.sendall(header + b"\0" * 1000)
        time.sleep(0.5)  # the server has read the header and is waiting for the rest
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        sock.close()
    assert peak < 2 * protocol.INITIAL_PAYLOAD_BYTES + 2**20


# ---- TLS with a pinned certificate ---------------------------------------------------------
@pytest.fixture(scope="module")
def tls_server(server, tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_pair(directory, "server", days=1)
    other_cert, _ = self_signed_pair(directory, "impostor", days=1)
    instance = OffloadServer(("alexnet",), TOKEN, device="cpu",
                             limits=ServerLimits(handshake_timeout_s=3.0),
                             tls=ServerTls(cert, key)).start()
    yield instance, cert, key, other_cert
    instance.close()


def test_tls_with_the_pinned_certificate_serves_correct_results(tls_server):
    instance, cert, _, other_cert = tls_server
    check = LeakCheck(instance)
    link = _link(instance, tls=PinnedServerTls(cert), model="alexnet")
    assert link.frame_tags is False  # TLS records protect the frames: no per-frame tag
    split = instance.models["alexnet"].split
    x = torch.randn(split.input_shape, generator=torch.Generator().manual_seed(3))
    cut = 5
    link.send_infer(1, "alexnet", cut, split.run_range(0, cut, x))
    torch.testing.assert_close(_result(link, 1), split.run_range(0, split.num_segments, x))
    link.close()
    with pytest.raises(HandshakeError, match="TLS"):  # a certificate other than the pin
        _link(instance, tls=PinnedServerTls(other_cert), model="alexnet")
    with pytest.raises(OSError):  # plain TCP to a TLS server: no handshake completes
        ServerLink("127.0.0.1", instance.port, TOKEN,
                   {"alexnet": instance.models["alexnet"].weights_sha256}, ShapedSender(None),
                   lambda *a: None, lambda *a: None, handshake_timeout_s=1.0).connect()
    check.assert_clean()


def _tls12_only(context: ssl.SSLContext) -> ssl.SSLContext:
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def test_tls_below_1_3_is_refused_both_ways(tls_server):
    instance, cert, key, _ = tls_server
    check = LeakCheck(instance)
    old_client = _tls12_only(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    old_client.check_hostname, old_client.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", instance.port), timeout=5) as raw, \
            pytest.raises(ssl.SSLError, match="VERSION|PROTOCOL"):
        old_client.wrap_socket(raw)
    # a server that offers only TLS 1.2 (with the pinned certificate even) is refused
    old_server = _tls12_only(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    old_server.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_once() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            old_server.wrap_socket(conn, server_side=True)

    thread = threading.Thread(target=serve_once)
    thread.start()
    link = ServerLink("127.0.0.1", listener.getsockname()[1], TOKEN,
                      {"alexnet": instance.models["alexnet"].weights_sha256}, ShapedSender(None),
                      lambda *a: None, lambda *a: None, tls=PinnedServerTls(cert),
                      handshake_timeout_s=3.0)
    with pytest.raises(ssl.SSLError, match="VERSION|PROTOCOL"):
        link.connect()
    thread.join(5)
    listener.close()
    check.assert_clean()


def _tls_handshake_by_hand(instance, cert) -> tuple[ssl.SSLSocket, FrameMac]:
    """A TLS client speaking the protocol by hand up to WELCOME; its socket and send MAC."""
    raw = socket.create_connection(("127.0.0.1", instance.port), timeout=10)
    sock = PinnedServerTls(cert).wrap(raw, time.monotonic() + 5)
    challenge = protocol.read_frame(sock)
    assert challenge.json()["frame_tags"] is False
    send_mac, receive_mac = send_auth(sock, challenge,
                                      {"alexnet": instance.models["alexnet"].weights_sha256})
    welcome = protocol.read_frame(sock)
    receive_mac.check(welcome)  # the server still proves the token by a tag
    assert welcome.json()["frame_tags"] is False
    return sock, send_mac


def test_inside_tls_frames_go_untagged_both_ways_and_a_tagged_one_is_refused(tls_server):
    instance, cert, _, _ = tls_server
    check = LeakCheck(instance)
    sock, send_mac = _tls_handshake_by_hand(instance, cert)
    split = instance.models["alexnet"].split
    cut = split.num_segments - 1
    x = torch.randn(split.boundary_shape(cut))
    protocol.send_frame(sock, MessageType.INFER, request_id=7, cut=cut, tensor=x)
    result = protocol.read_frame(sock)
    assert result.msg_type == MessageType.RESULT and result.request_id == 7
    assert result.tag == b""  # untagged on the wire
    torch.testing.assert_close(result.tensor, split.run_range(cut, split.num_segments, x))
    protocol.send_frame(sock, MessageType.INFER, mac=send_mac, request_id=8, cut=cut, tensor=x)
    error = protocol.read_frame(sock)
    assert error.tag == b"" and error.json() == {
        "code": "bad_request", "reason": "tagged INFER on a channel agreed untagged"}
    sock.close()
    check.assert_clean()


def test_an_offer_rewritten_to_untagged_fails_the_token_proof(server, leaks):
    """On plain TCP the server offers tagged frames; an on-path rewrite of the CHALLENGE to
    untagged ones changes the keys (they bind the CHALLENGE), so the AUTH fails."""
    sock, challenge = raw_connection(server)
    offer = challenge.json()
    assert offer["frame_tags"] is True
    rewritten = protocol.Frame(MessageType.CHALLENGE, payload=json.dumps(
        {**offer, "frame_tags": False}).encode())
    send_auth(sock, rewritten, {"resnet18": server.models["resnet18"].weights_sha256})
    assert closing_error(sock) == {"code": "auth_failed"}


def test_a_client_without_tls_refuses_an_untagged_offer_before_its_auth(server):
    check = LeakCheck()
    hashes = {"resnet18": server.models["resnet18"].weights_sha256}
    received: list[MessageType] = []

    def offer_untagged(conn, fake):
        send_challenge(conn, hashes, json.dumps({
            "protocol": protocol.VERSION, "nonce": "ab" * 32, "models": hashes,
            "frame_tags": False}).encode())
        received.append(protocol.read_frame(conn).msg_type)  # EOF expected: the client left

    with FakeServer(hashes, [offer_untagged]) as fake:
        link = ServerLink("127.0.0.1", fake.port, TOKEN, hashes, ShapedSender(None),
                          lambda *a: None, lambda *a: None)
        with pytest.raises(HandshakeError, match="untagged frames on a connection without TLS"):
            link.connect()
    assert received == []  # no AUTH: nothing to test token guesses against
    check.assert_clean()


class BitFlippingRelay:
    """A TCP relay to the server on ``port`` that flips one bit of the client's byte ``at``:
    an on-path attacker altering a frame inside TLS."""

    def __init__(self, port: int, at: int):
        self.target, self.at = port, at
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.pipes: list[threading.Thread] = []
        self.accepting = threading.Thread(target=self._accept)
        self.accepting.start()

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.target), timeout=10)
        self.sockets += [client, server]
        for source, sink, flip in ((client, server, True), (server, client, False)):
            pipe = threading.Thread(target=self._pipe, args=(source, sink, flip))
            pipe.start()
            self.pipes.append(pipe)

    def _pipe(self, source: socket.socket, sink: socket.socket, flip: bool) -> None:
        seen = 0
        try:
            while data := bytearray(source.recv(65536)):
                if flip and seen <= self.at < seen + len(data):
                    data[self.at - seen] ^= 0x01
                seen += len(data)
                sink.sendall(data)
        except OSError:
            pass  # one side is gone
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        self.accepting.join(5)
        for pipe in self.pipes:
            pipe.join(10)
        for sock in self.sockets:
            sock.close()


def test_a_bit_flipped_inside_tls_closes_the_connection_unserved(tls_server):
    instance, cert, _, _ = tls_server
    check = LeakCheck(instance)
    requests = instance.stats.requests
    relay = BitFlippingRelay(instance.port, at=100_000)  # inside the INFER's 602 kB payload
    failures: list[str] = []
    link = ServerLink("127.0.0.1", relay.port, TOKEN,
                      {"alexnet": instance.models["alexnet"].weights_sha256}, ShapedSender(None),
                      lambda *a: None, lambda link, reason: failures.append(reason),
                      tls=PinnedServerTls(cert)).connect()
    assert link.frame_tags is False  # the record's AEAD tag is all that guards the frame
    split = instance.models["alexnet"].split
    with contextlib.suppress(OSError):  # the server may close while the frame still leaves
        link.send_infer(1, "alexnet", 0, torch.randn(split.input_shape))
    deadline = time.monotonic() + 10
    while not failures and time.monotonic() < deadline:
        time.sleep(0.05)
    assert failures, "the link outlived a tampered TLS record"
    assert instance.stats.requests == requests  # the altered frame was never served
    link.close()
    relay.close()
    check.assert_clean()
