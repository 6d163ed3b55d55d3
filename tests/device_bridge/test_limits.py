"""Issue 29, items 2 and 3 on the server: every bound an authenticated (or any) peer can
cross is crossed here, on a real server on 127.0.0.1; each crossing gets a one-line refusal
while another client keeps being served, and nothing is left behind."""

import logging
import os
import resource
import select
import socket
import threading
import time

import pytest
import torch

from device_bridge import protocol
from device_bridge.protocol import MessageType
from device_bridge.server import OffloadServer, ServerLimits

from .conftest import TOKEN
from .wire import LeakCheck, closing_error, send_auth

MODEL = "resnet18"
LIMITS = ServerLimits(max_frame_bytes=3 * 2**19, max_buffered_bytes=3 * 2**20, max_batch=64,
                      max_concurrent=1, queue_timeout_s=0.5, frame_timeout_s=2.0,
                      idle_timeout_s=30.0, handshake_timeout_s=5.0, max_handshakes=4,
                      max_handshakes_per_address=2)


@pytest.fixture(scope="module")
def bounded(server):
    instance = OffloadServer((MODEL,), TOKEN, device="cpu", limits=LIMITS).start()
    yield instance
    instance.close()


@pytest.fixture()
def leaks(bounded):
    check = LeakCheck(bounded)
    yield check
    check.assert_clean()


class Peer:
    """An authenticated connection, spoken by hand (from ``source``, a loopback address)."""

    def __init__(self, server, source: str = "127.0.0.1"):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                             source_address=(source, 0))
        challenge = protocol.read_frame(self.sock)
        self.send_mac, self.receive_mac = send_auth(
            self.sock, challenge, {MODEL: server.models[MODEL].weights_sha256})
        self.receive_mac.check(protocol.read_frame(self.sock))  # WELCOME
        self.reader = protocol.FrameReader(self.sock, mac=self.receive_mac)
        self.split = server.models[MODEL].split

    def infer(self, batch: int, request_id: int = 1) -> None:
        cut = self.split.num_segments - 1
        protocol.send_frame(self.sock, MessageType.INFER, mac=self.send_mac,
                            request_id=request_id, cut=cut, tensor=torch.randn(batch, 512))

    def served(self, batch: int = 1) -> bool:
        """One late-cut request answered with the right result."""
        self.infer(batch, request_id=7)
        reply = self.reader.read()
        return (reply.msg_type == MessageType.RESULT and reply.request_id == 7
                and tuple(reply.tensor.shape) == (batch, 1000))

    def refusal(self) -> dict:
        """The (tagged) ERROR the server closed with."""
        error = self.reader.read()
        assert error.msg_type == MessageType.ERROR
        closing_error(self.sock)
        return error.json()

    def close(self) -> None:
        self.sock.close()


def _one_line(error: dict) -> str:
    reason = error["reason"]
    assert "\n" not in reason and len(reason) < 200
    return reason


# ---- item 2: bounds for authenticated peers --------------------------------------------------
def test_batch_over_the_cap_is_refused_before_its_payload(bounded, leaks):
    other, greedy = Peer(bounded), Peer(bounded)
    greedy.infer(65)
    error = greedy.refusal()
    assert error["code"] == "bad_request"
    assert _one_line(error) == "resnet18: batch 65 exceeds this server's maximum of 64"
    assert other.served(batch=64)
    other.close()


def test_no_inference_slot_within_the_queue_time_is_refused(bounded, leaks):
    waiting, refused = Peer(bounded), Peer(bounded)
    bounded.inference_slots.acquire()  # the one slot, as a long inference would hold it
    released = threading.Timer(0.2, bounded.inference_slots.release)
    released.start()
    assert waiting.served()  # waited 0.2 s for the slot, then served
    released.join()
    bounded.inference_slots.acquire()
    try:
        start = time.monotonic()
        refused.infer(1)
        error = refused.refusal()
        waited = time.monotonic() - start
    finally:
        bounded.inference_slots.release()
    assert error["code"] == "server_busy"
    assert _one_line(error) == "1 inferences running; no slot free within 0.5 s"
    assert waited >= 0.5  # not before the queue timeout (how late depends on the machine)
    assert waiting.served()  # the slot is back: the other client is served again
    waiting.close()


def test_buffer_budget_shared_by_all_connections(bounded, leaks):
    frame_bytes = LIMITS.max_frame_bytes
    holder, greedy, small = Peer(bounded), Peer(bounded), Peer(bounded)
    # a full-size PROBE leaves the holder's connection with a full-size buffer (reused)
    protocol.send_frame(holder.sock, MessageType.PROBE, mac=holder.send_mac,
                        tensor=torch.zeros(frame_bytes, dtype=torch.uint8))
    assert holder.reader.read().msg_type == MessageType.PROBE_ACK
    protocol.send_frame(greedy.sock, MessageType.PROBE, mac=greedy.send_mac,
                        tensor=torch.zeros(frame_bytes, dtype=torch.uint8))
    error = greedy.refusal()
    assert error["code"] == "server_busy"
    assert _one_line(error).startswith("payload buffers of all connections would hold ")
    assert error["reason"].endswith(f"bytes; the budget is {LIMITS.max_buffered_bytes}")
    assert small.served() and holder.served()
    assert bounded.budget.used >= frame_bytes
    for peer in (holder, small):
        peer.close()
    deadline = time.monotonic() + 5
    while bounded.budget.used and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bounded.budget.used == 0  # every connection gave its buffer back


def test_a_frame_trickled_past_the_frame_deadline_is_dropped(bounded, leaks):
    other, slow = Peer(bounded), Peer(bounded)
    cut = slow.split.num_segments - 1
    header, payload = protocol.encode_frame(MessageType.INFER, request_id=1, cut=cut,
                                            tensor=torch.randn(1, 512), tagged=True)
    slow.sock.sendall(bytes(header))
    start = time.monotonic()
    for byte in bytes(payload):  # every 0.25 s a byte: no single read waits long
        slow.sock.send(bytes([byte]))
        if select.select([slow.sock], [], [], 0.25)[0] or time.monotonic() - start > 10:
            break
        assert other.served()  # served while the slow frame is pending
    error = slow.refusal()
    waited = time.monotonic() - start
    assert error["code"] == "frame_timeout"
    assert _one_line(error) == "a frame's bytes took longer than the frame deadline of 2.0 s"
    # the deadline runs from the server's first read of the header, just after ``start``
    assert waited >= LIMITS.frame_timeout_s - 0.1  # not before the deadline
    other.close()


def test_a_peer_that_does_not_read_its_results_is_dropped(bounded, leaks, caplog):
    other = Peer(bounded)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a tiny window
    stalled.connect(("127.0.0.1", bounded.port))
    send_mac, _ = send_auth(stalled, protocol.read_frame(stalled),
                            {MODEL: bounded.models[MODEL].weights_sha256})
    cut = other.split.num_segments - 1
    limits_before = bounded.stats.refused_limits

    def flood() -> None:  # up to 64 MB of results it never reads: more than any send buffer
        try:
            for request_id in range(256):
                protocol.send_frame(stalled, MessageType.INFER, mac=send_mac,
                                    request_id=request_id, cut=cut,
                                    tensor=torch.randn(64, 512))
        except OSError:
            pass  # the server gave up on us

    caplog.set_level(logging.WARNING, logger="device_bridge.server")
    flooder = threading.Thread(target=flood)
    flooder.start()
    deadline = time.monotonic() + 15
    while bounded.stats.refused_limits == limits_before and time.monotonic() < deadline:
        assert other.served()
        time.sleep(0.2)
    stalled.close()
    flooder.join(10)
    assert bounded.stats.refused_limits == limits_before + 1
    refusals = [r.getMessage() for r in caplog.records if "within the frame deadline" in
                r.getMessage()]
    assert len(refusals) == 1 and refusals[0].endswith(
        "closing connection: the peer did not take a RESULT within the frame deadline of 2.0 s")
    assert other.served()
    other.close()


# ---- item 3: posture -----------------------------------------------------------------------------
def test_one_address_cannot_hold_every_handshake_slot(bounded, leaks):
    busy = bounded.stats.refused_busy
    held = [socket.create_connection(("127.0.0.1", bounded.port), timeout=10,
                                     source_address=("127.0.0.2", 0)) for _ in range(2)]
    for sock in held:
        assert protocol.read_frame(sock).msg_type == MessageType.CHALLENGE  # in handshake
    third = socket.create_connection(("127.0.0.1", bounded.port), timeout=10,
                                     source_address=("127.0.0.2", 0))
    assert closing_error(third) == {"code": "server_busy"}
    assert bounded.stats.refused_busy == busy + 1
    other = Peer(bounded)  # another address still gets a handshake slot
    assert other.served()
    for sock in (*held, other.sock):
        sock.close()


def test_accept_loop_survives_running_out_of_file_descriptors(bounded, leaks, caplog):
    caplog.set_level(logging.WARNING, logger="device_bridge.server")
    errors_before = bounded.stats.accept_errors
    victim = socket.socket()  # its descriptor exists before the table is full
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, hard))
    try:
        while True:
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        victim.connect(("127.0.0.1", bounded.port))  # the kernel queues it; accept() fails
        deadline = time.monotonic() + 5
        while bounded.stats.accept_errors < errors_before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert bounded.stats.accept_errors >= errors_before + 2  # failed, backed off, retried
    assert any("accept failed ([Errno 24] Too many open files); retrying in" in r.getMessage()
               for r in caplog.records)
    victim.settimeout(10)
    challenge = protocol.read_frame(victim)  # accepted once descriptors were free again
    send_mac, receive_mac = send_auth(victim, challenge,
                                      {MODEL: bounded.models[MODEL].weights_sha256})
    receive_mac.check(protocol.read_frame(victim))
    cut = bounded.models[MODEL].split.num_segments - 1
    protocol.send_frame(victim, MessageType.INFER, mac=send_mac, request_id=3, cut=cut,
                        tensor=torch.randn(1, 512))
    assert protocol.FrameReader(victim, mac=receive_mac).read().msg_type == MessageType.RESULT
    victim.close()


def test_peer_text_is_quoted_in_the_server_log(bounded, leaks, caplog):
    caplog.set_level(logging.WARNING, logger="device_bridge.server")
    sock = socket.create_connection(("127.0.0.1", bounded.port), timeout=10)
    name = "resnet18\n2026-12-07 00:00:00 device_bridge.server INFO forged line " + "x" * 500
    send_auth(sock, protocol.read_frame(sock), {name: "0" * 64})
    error = closing_error(sock)
    assert error["code"] == "bad_request" and "\n" not in error["reason"]
    logged = [r.getMessage() for r in caplog.records if "is not hosted here" in r.getMessage()]
    assert len(logged) == 1 and "\n" not in logged[0] and len(logged[0]) < 300
    assert "'resnet18\\n2026-12-07 00:00:00 device_bridge.server INFO forged" in logged[0]



def test_token_files_and_plain_tcp_off_loopback_are_refused_in_one_line(tmp_path, capsys):
    from device_bridge import client as client_module
    from device_bridge import server as server_module

    token = tmp_path / "token"
    token.write_text("t" * 64)
    token.chmod(0o644)
    commands = {"server": (server_module.main, ["--models", MODEL]),
                "client": (client_module.main, ["--server", "127.0.0.1:9", "--jobs", MODEL,
                                                 "--bandwidth-mbps", "5"])}
    for main, arguments in commands.values():
        with pytest.raises(SystemExit) as exit_info:
            main([*arguments, "--token-file", str(token)])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert error.endswith(f"error: token file {token}: mode 0644 lets group or others "
                              f"access it; chmod 600 {token}\n") and error.count("\n") == 1
    token.chmod(0o600)
    with pytest.raises(SystemExit) as exit_info:
        server_module.main(["--models", MODEL, "--token-file", str(token), "--host", "0.0.0.0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "error: --host '0.0.0.0' is not a loopback address: serve TLS (--tls-cert, --tls-key) "
        "or pass --insecure-plaintext\n")


def test_only_loopback_addresses_may_serve_plain_tcp():
    from device_bridge.server import is_loopback, require_tls_off_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "", "::"]))
    require_tls_off_loopback("0.0.0.0", None, insecure_plaintext=True)  # said explicitly
    with pytest.raises(ValueError, match="not a loopback address"):
        OffloadServer((MODEL,), TOKEN, host="0.0.0.0")  # before any model loads
