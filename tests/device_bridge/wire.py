"""Raw-socket helpers: speak the protocol by hand to test the server against any peer."""

import os
import secrets
import socket
import threading
import time

from device_bridge import protocol
from device_bridge.protocol import FrameMac, MessageType

from .conftest import TOKEN


def raw_connection(server) -> tuple[socket.socket, protocol.Frame]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    challenge = protocol.read_frame(sock)
    assert challenge.msg_type == MessageType.CHALLENGE
    return sock, challenge


def send_auth(sock: socket.socket, challenge: protocol.Frame, models: dict[str, str],
              token: bytes = TOKEN) -> tuple[FrameMac, FrameMac]:
    """AUTH as a client would send it; returns (send, receive) MACs of the session."""
    client_nonce = secrets.token_bytes(protocol.NONCE_BYTES)
    server_nonce = bytes.fromhex(challenge.json()["nonce"])
    to_server, to_client = protocol.session_keys(token, server_nonce, client_nonce,
                                                 challenge.payload)
    send_mac = FrameMac(to_server)
    protocol.send_frame(sock, MessageType.AUTH, mac=send_mac, control={
        "nonce": client_nonce.hex(), "models": models})
    return send_mac, FrameMac(to_client)


def authenticated(server, model: str = "resnet18") -> tuple[socket.socket, FrameMac, FrameMac]:
    sock, challenge = raw_connection(server)
    send_mac, receive_mac = send_auth(sock, challenge,
                                      {model: server.models[model].weights_sha256})
    welcome = protocol.read_frame(sock)
    assert welcome.msg_type == MessageType.WELCOME
    receive_mac.check(welcome)
    return sock, send_mac, receive_mac


def closing_error(sock: socket.socket) -> dict:
    """Read until EOF; the last ERROR's payload ({} if none came)."""
    error: dict = {}
    try:
        while True:
            frame = protocol.read_frame(sock)
            if frame.msg_type == MessageType.ERROR:
                error = frame.json()
    except (protocol.ConnectionClosed, ConnectionResetError):
        pass
    sock.close()
    return error


def _socket_count() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass  # closed meanwhile (the listing's own fd)
    return count


class LeakCheck:
    """Threads, sockets and server connections before; ``assert_clean`` waits (up to
    ``timeout_s``) for every one opened since to be gone."""

    def __init__(self, server=None):
        self.server = server
        self.threads = set(threading.enumerate())
        self.sockets = _socket_count()
        self.connections = server.open_connections if server is not None else 0

    def assert_clean(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            extra = [t.name for t in threading.enumerate() if t not in self.threads]
            sockets = _socket_count()
            connections = self.server.open_connections if self.server is not None else 0
            clean = not extra and sockets <= self.sockets and connections <= self.connections
            if clean or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert not extra, f"threads left behind: {extra}"
        assert sockets <= self.sockets, f"{sockets - self.sockets} socket(s) left open"
        assert connections <= self.connections, "server still holds connections"
