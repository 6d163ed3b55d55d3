"""A fake offloading server for the client's side of every failure: a real TCP socket on
127.0.0.1 that speaks the wire format by hand. Connection ``k`` is served by ``scripts[k]``
(the last script serves every later connection), so a test can make the first connection
good and every reconnect hostile."""

import json
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from device_bridge import protocol
from device_bridge.protocol import DType, FrameMac, MessageType

from .conftest import TOKEN

HUGE_DIM = 2**32 - 1
HUGE_INTEGER = b"1" * 5000  # json.loads: "Exceeds the limit (4300 digits)", a ValueError


def raw_frame(msg_type: MessageType, payload: bytes = b"", *, dtype: DType = DType.NONE,
              shape: tuple[int, ...] = (), payload_len: int | None = None,
              request_id: int = 0, elapsed_s: float = 0.0,
              mac: FrameMac | None = None, tag: bytes | None = None) -> bytes:
    """A frame built field by field, so any field can lie; tagged under ``mac`` (or with
    ``tag`` as its tag bytes)."""
    header = protocol.HEADER.pack(
        protocol.MAGIC, protocol.VERSION, int(msg_type),
        protocol.FLAG_TAGGED if mac is not None or tag is not None else 0, 0, 0, request_id,
        elapsed_s, int(dtype), len(shape), *shape, *[0] * (protocol.MAX_NDIM - len(shape)),
        len(payload) if payload_len is None else payload_len)
    if mac is not None:
        tag = mac.tag([header, payload])
    return header + payload + (tag or b"")


@dataclass
class Session:
    """The fake server's side of a connection that completed the handshake."""
    conn: socket.socket
    send_mac: FrameMac
    reader: protocol.FrameReader

    def send(self, msg_type: MessageType, **fields) -> None:
        protocol.send_frame(self.conn, msg_type, mac=self.send_mac, **fields)


def send_challenge(conn: socket.socket, hashes: dict[str, str],
                   payload: bytes | None = None) -> tuple[bytes, bytes]:
    """A CHALLENGE (``payload`` replaces a genuine one); returns (nonce, payload)."""
    nonce = secrets.token_bytes(protocol.NONCE_BYTES)
    if payload is None:
        payload = json.dumps({"protocol": protocol.VERSION, "nonce": nonce.hex(),
                              "models": hashes, "frame_tags": True}).encode()
    conn.sendall(raw_frame(MessageType.CHALLENGE, payload))
    return nonce, payload


def handshake(conn: socket.socket, hashes: dict[str, str], token: bytes = TOKEN,
              welcome: bytes | None = None) -> Session:
    """Play the server's part; the WELCOME (``welcome`` replaces a genuine payload) is tagged
    under the key ``token`` gives."""
    nonce, challenge = send_challenge(conn, hashes)
    auth = protocol.read_frame(conn)
    client_nonce = bytes.fromhex(auth.json()["nonce"])
    to_server, to_client = protocol.session_keys(token, nonce, client_nonce, challenge)
    send_mac, receive_mac = FrameMac(to_client), FrameMac(to_server)
    receive_mac.start()  # AUTH took sequence number 0 (unchecked: a rogue cannot check it)
    if welcome is None:
        welcome = json.dumps({"models": list(auth.json()["models"]), "device": "fake",
                              "whole_model_s": {}, "frame_tags": True}).encode()
    conn.sendall(raw_frame(MessageType.WELCOME, welcome, mac=send_mac))
    return Session(conn, send_mac, protocol.FrameReader(conn, mac=receive_mac))


def wait_for_close(conn: socket.socket) -> None:
    """Hold the connection until the client closes it."""
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass


def serve_until_infer(session: Session, on_infer: Callable[[Session, protocol.Frame], None],
                      on_probe: Callable[[Session, protocol.Frame], None] | None = None) -> None:
    """Answer PROBEs (or hand them to ``on_probe``), hand the first INFER to ``on_infer``, then
    hold the connection until the client closes it."""
    while True:
        frame = session.reader.read()
        if frame.msg_type == MessageType.INFER:
            on_infer(session, frame)
            break
        if on_probe is not None:
            on_probe(session, frame)
            break
        session.send(MessageType.PROBE_ACK, request_id=frame.request_id)
    wait_for_close(session.conn)


class FakeServer:
    Script = Callable[[socket.socket, "FakeServer"], None]

    def __init__(self, hashes: dict[str, str], scripts: list[Script]):
        self.hashes = hashes
        self.scripts = scripts
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepting.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            script = self.scripts[min(self.connections, len(self.scripts) - 1)]
            self.connections += 1
            thread = threading.Thread(target=self._run, args=(conn, script), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, conn: socket.socket, script: Script) -> None:
        with conn:
            conn.settimeout(30)
            try:
                script(conn, self)
            except (OSError, protocol.ProtocolError):
                pass  # the client hung up on us, as it should

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self._accepting.join(5)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> "FakeServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
