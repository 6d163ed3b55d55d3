"""The server against hostile and concurrent clients (real sockets on 127.0.0.1)."""

import os
import random
import socket
import threading

import pytest
import torch

from device_bridge import protocol
from device_bridge.graph_split import SplitModel
from device_bridge.link import HandshakeError, ServerLink
from device_bridge.protocol import MessageType
from device_bridge.shaping import ShapedSender

from .conftest import TOKEN
from .wire import authenticated, closing_error, raw_connection, send_auth


@pytest.fixture(scope="module")
def local_models(server):
    return {name: SplitModel(name) for name in ("alexnet", "resnet18")}


def _link(server, token=TOKEN, hashes=None, results=None, failures=None) -> ServerLink:
    hashes = hashes or {name: server.models[name].weights_sha256 for name in ("alexnet",
                                                                            "resnet18")}
    results = results if results is not None else {}
    failures = failures if failures is not None else []
    done = threading.Condition()

    def on_result(request_id, tensor, elapsed_s, arrived):
        with done:
            results[request_id] = tensor
            done.notify_all()

    link = ServerLink("127.0.0.1", server.port, token, hashes, ShapedSender(None),
                      on_result, lambda link, reason: failures.append(reason))
    link.results, link.done = results, done
    return link.connect()


def _wait(link, count, timeout=60):
    with link.done:
        assert link.done.wait_for(lambda: len(link.results) >= count, timeout)


def _check_served(server, local_models):
    """A well-behaved client still gets correct answers."""
    split = local_models["resnet18"]
    x = torch.randn(split.input_shape, generator=torch.Generator().manual_seed(5))
    expected = split.run_range(0, split.num_segments, x)
    link = _link(server)
    link.send_infer(1, "resnet18", 6, split.run_range(0, 6, x))
    _wait(link, 1)
    link.close()
    torch.testing.assert_close(link.results[1], expected, rtol=1e-4, atol=1e-5)


def test_wrong_token_is_refused_then_good_client_served(server, local_models):
    rejected = server.stats.rejected
    with pytest.raises(HandshakeError, match="auth_failed"):
        _link(server, token=b"wrong-token-0123456789-0123456789")
    assert server.stats.rejected == rejected + 1
    _check_served(server, local_models)


def test_weights_mismatch_and_unknown_model_are_refused(server):
    with pytest.raises(HandshakeError, match="weights differ"):
        _link(server, hashes={"resnet18": "0" * 64})
    sock, challenge = raw_connection(server)
    send_auth(sock, challenge, {"vgg16": "x"})
    # the peer proved the token, so it is told why
    assert closing_error(sock) == {"code": "bad_request", "reason": "model 'vgg16' is not "
                                   "hosted here (hosted: alexnet, resnet18, mobilenet_v2)"}


@pytest.mark.parametrize("tensor, cut, reason", [
    (torch.randn(1, 64, 56, 56), 99, "out of range"),
    (torch.randn(1, 64, 55, 56), 4, "expects shape"),
    (torch.ones(1, 64, 56, 56, dtype=torch.int32), 4, "floating point"),
])
def test_bad_requests_close_only_that_connection(server, local_models, tensor, cut, reason):
    sock, send_mac, _ = authenticated(server)
    protocol.send_frame(sock, MessageType.INFER, mac=send_mac, request_id=1, model_id=0, cut=cut,
                        tensor=tensor)
    error = closing_error(sock)
    assert error["code"] == "bad_request" and reason in error["reason"]
    _check_served(server, local_models)


def test_oversized_frame_is_refused_without_allocating(server, local_models):
    sock, _, _ = authenticated(server)
    header = protocol.HEADER.pack(protocol.MAGIC, protocol.VERSION, int(MessageType.INFER),
                                  protocol.FLAG_TAGGED, 0, 4, 1, 0.0,
                                  int(protocol.DType.FLOAT32), 2, 2**20, 2**10, *[0] * 6,
                                  2**32)
    sock.sendall(header)
    assert "exceeds" in closing_error(sock)["reason"]
    _check_served(server, local_models)


def test_fuzzed_and_truncated_frames_then_good_client(server, local_models):
    rng = random.Random(1234)
    for trial in range(40):
        authenticate = trial % 2 == 0
        if authenticate:
            sock, _, _ = authenticated(server)
        else:
            sock, _ = raw_connection(server)
        try:
            _send_garbage(sock, rng, trial % 4)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may already have closed on the first bad bytes
        error = closing_error(sock)
        if not authenticate:  # fixed codes only, no parser or exception text
            assert set(error) <= {"code"}
    _check_served(server, local_models)


def _send_garbage(sock: socket.socket, rng: random.Random, kind: int) -> None:
    if kind == 0:      # pure noise
        sock.sendall(os.urandom(rng.randint(1, 300)))
    elif kind == 1:    # a valid-looking header with random fields
        fields = [rng.getrandbits(8), rng.getrandbits(16), rng.getrandbits(16),
                  rng.getrandbits(16), rng.getrandbits(64), rng.random(),
                  rng.getrandbits(8), rng.randint(0, 9)]
        shape = [rng.randint(0, 70) for _ in range(8)]
        sock.sendall(protocol.HEADER.pack(protocol.MAGIC, protocol.VERSION, *fields, *shape,
                                          rng.getrandbits(20)) + os.urandom(64))
    elif kind == 2:    # a frame cut off in the header, then EOF
        header, _ = protocol.encode_frame(MessageType.INFER, tensor=torch.ones(3))
        sock.sendall(header[:rng.randint(1, len(header) - 1)])
    else:              # a frame cut off in the payload, then EOF
        header, payload = protocol.encode_frame(
            MessageType.INFER, cut=4, tensor=torch.ones(1, 64, 56, 56))
        sock.sendall(header + payload[:rng.randint(0, 1000)])


def test_stalled_handshake_times_out(server, local_models):
    sock, _ = raw_connection(server)
    sock.sendall(b"PSDB")  # then nothing: the 2 s handshake deadline closes it
    assert closing_error(sock) == {"code": "handshake_timeout"}
    _check_served(server, local_models)


def test_eight_concurrent_clients(server, local_models):
    inputs = {}
    for name, split in local_models.items():
        x = torch.randn(split.input_shape, generator=torch.Generator().manual_seed(9))
        inputs[name] = (x, split.run_range(0, split.num_segments, x))
    errors = []

    def client(number: int) -> None:
        try:
            link = _link(server)
            expected = {}
            for k in range(3):
                name = ("alexnet", "resnet18")[(number + k) % 2]
                split = local_models[name]
                cut = (number * 3 + k) % split.num_segments
                x, full = inputs[name]
                link.send_infer(k, name, cut, split.run_range(0, cut, x))
                expected[k] = full
            _wait(link, 3)
            link.close()
            for k, full in expected.items():
                torch.testing.assert_close(link.results[k], full, rtol=1e-4, atol=1e-5)
        except Exception as error:  # collected and reported below
            errors.append(f"client {number}: {error!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
