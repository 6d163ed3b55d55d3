"""Issue 29, item 1: no server can stop the device from finishing its work.

A fake server (a real socket on 127.0.0.1 speaking the wire format by hand) answers with
each kind of malformed, unproven, refused or stalled traffic, at connect, after a reconnect
and mid-batch; every batch still ends with every result (computed on the device, equal to
the model run locally) and the reason recorded on each job that fell back."""

import json
import math
import socket
import threading
import time

import pytest
import torch

from device_bridge import client as client_module
from device_bridge import protocol
from device_bridge.client import OffloadClient, parse_jobs
from device_bridge.graph_split import SplitModel, weights_hash
from device_bridge.link import ServerLink
from device_bridge.protocol import DType, MessageType
from device_bridge.shaping import ShapedSender
from envs.offload import Plan

from .conftest import TOKEN
from .fake_server import (
    HUGE_DIM,
    HUGE_INTEGER,
    FakeServer,
    handshake,
    raw_frame,
    send_challenge,
    serve_until_infer,
    wait_for_close,
)

MODEL = "resnet18"


@pytest.fixture(scope="module")
def hashes():
    return {MODEL: weights_hash(SplitModel(MODEL).model)}


def _client(fake: FakeServer, **overrides) -> OffloadClient:
    settings = {"latency_s": 0.0, "calibrate": False, "handshake_timeout_s": 1.0,
                "stall_timeout_s": 1.0, "result_timeout_s": 2.0, **overrides}
    return OffloadClient(("127.0.0.1", fake.port), TOKEN, [MODEL], 50.0, **settings)


def _one_by_one_on_the_server(instance) -> Plan:
    """Every job whole on the server, each started when the previous one is done, so each
    job start after a failure is a reconnect attempt."""
    return Plan(tuple((j, 0) for j in range(instance.num_jobs)), sequential=True)


def _run(fake: FakeServer, jobs: int, probe: bool = False, **overrides):
    """One batch; without ``probe`` it is planned on the nominal link (no link probes)."""
    client = _client(fake, **overrides)
    batch = parse_jobs(f"{MODEL}:{jobs}")
    try:
        instance = None if probe else client.plan_instance(batch)
        return client, client.run(batch, _one_by_one_on_the_server, instance=instance,
                                  warmup=False)
    finally:
        client.close()


def _check_local_and_correct(client: OffloadClient, result, reasons: list[str]) -> None:
    """Every job finished on the device with the model's exact output and ``reasons[i]`` in
    its recorded reason."""
    split = client.splits[MODEL]
    assert len(result.jobs) == len(reasons)
    for job, fragment in zip(result.jobs, reasons, strict=True):
        assert job.where == "local" and job.fallback, job.name
        assert fragment in job.reason, (job.name, job.reason)
        torch.testing.assert_close(job.output, split.run_range(0, split.num_segments,
                                                                job.input))
    summary = result.summary()
    assert summary["fallback"] == len(reasons) and sum(summary["fallback_reasons"].values()) \
        == len(reasons)


# ---- at connect ----------------------------------------------------------------------------
def _challenge(payload: bytes):
    def script(conn, fake):
        send_challenge(conn, fake.hashes, payload)
        wait_for_close(conn)
    return script


def _challenge_fields(**fields):
    def script(conn, fake):
        offer = {"protocol": protocol.VERSION, "nonce": "ab" * 32, "models": fake.hashes,
                 "frame_tags": True, **fields}
        send_challenge(conn, fake.hashes, json.dumps(offer).encode())
        wait_for_close(conn)
    return script


def _raw(data: bytes):
    def script(conn, fake):
        conn.sendall(data)
        wait_for_close(conn)
    return script


def _welcome(payload: bytes | None = None, token: bytes = TOKEN):
    def script(conn, fake):
        handshake(conn, fake.hashes, token, payload)
        wait_for_close(conn)
    return script


def _untagged_welcome(conn, fake):
    send_challenge(conn, fake.hashes)
    models = list(protocol.read_frame(conn).json()["models"])
    conn.sendall(raw_frame(MessageType.WELCOME, json.dumps(
        {"models": models, "device": "fake"}).encode()))
    wait_for_close(conn)


def _welcome_fields(**fields) -> bytes:
    return json.dumps({"models": [MODEL], "device": "fake", "frame_tags": True,
                       **fields}).encode()


CONNECT_KINDS = {  # kind: (script, what the recorded reason says)
    "bad-magic": (_raw(b"HTTP/1.1 400 Bad Request\r\n".ljust(70, b" ")), "bad magic"),
    "huge-integer-json": (_challenge(b'{"protocol": 3, "nonce": ' + HUGE_INTEGER + b"}"),
                          "not readable JSON: ValueError"),
    "not-utf8": (_challenge(b"\xff\xfe{}"), "not readable JSON"),
    "deep-nesting": (_challenge(b"[" * 20000 + b"]" * 20000), "not readable JSON: RecursionError"),
    "not-an-object": (_challenge(b"[1, 2]"), "must be a JSON object"),
    "zero-size-huge-dims": (_raw(raw_frame(MessageType.CHALLENGE, dtype=DType.FLOAT32,
                                           shape=(0, HUGE_DIM, HUGE_DIM))), "exceeds"),
    "bad-nonce": (_challenge_fields(nonce="zz"), "nonce must be 32 bytes"),
    "models-not-an-object": (_challenge_fields(models=[1]), "models must be an object"),
    "untagged-offer-without-tls": (_challenge_fields(frame_tags=False),
                                   "untagged frames on a connection without TLS"),
    "wrong-proof": (_welcome(token=b"a guess at the token, 32 bytes long"),
                    "did not prove it knows the token"),
    "untagged-welcome": (_untagged_welcome, "did not prove it knows the token"),
    "welcome-huge-integer": (_welcome(b'{"models": ' + HUGE_INTEGER + b"}"),
                             "WELCOME payload is not readable JSON"),
    "welcome-wrong-models": (_welcome(_welcome_fields(models=5)), "server agreed to 5"),
    "welcome-bad-seconds": (_welcome(_welcome_fields(whole_model_s={MODEL: "fast"})),
                            "whole_model_s must map our models to seconds"),
    "welcome-overflowing-seconds": (_welcome(_welcome_fields(whole_model_s={MODEL: 10**4000})),
                                    "whole_model_s must map our models to seconds"),
    "welcome-long-device": (_welcome(_welcome_fields(device="x" * 1000)),
                            "device must be a short string"),
    "welcome-other-channel": (_welcome(_welcome_fields(frame_tags=False)),
                              "differs from the CHALLENGE's True"),
    "refusal": (_raw(raw_frame(MessageType.ERROR, b'{"code": "server_busy"}')),
                "server refused: 'server_busy'"),
    "refusal-forging-a-log-line": (_raw(raw_frame(
        MessageType.ERROR, json.dumps({"code": "busy\n2026 INFO forged"}).encode())),
        "server refused: 'busy\\n2026 INFO forged'"),
    "eof": (lambda conn, fake: None, "peer closed after 0 of 70 bytes"),
    "stall": (lambda conn, fake: wait_for_close(conn), "server unavailable"),
}


@pytest.mark.parametrize("kind", list(CONNECT_KINDS))
def test_hostile_server_at_connect_cannot_stop_the_batch(hashes, kind):
    script, fragment = CONNECT_KINDS[kind]
    with FakeServer(hashes, [script]) as fake:
        client, result = _run(fake, 2)
    assert client.link is None
    _check_local_and_correct(client, result, [fragment, fragment])


def _good_then_dropped(conn, fake):
    """A genuine server that answers the probes and dies with the first INFER."""
    serve_until_infer(handshake(conn, fake.hashes),
                      lambda session, frame: session.conn.shutdown(socket.SHUT_RDWR))


def test_every_hostile_reconnect_is_survived_in_one_batch(hashes):
    kinds = list(CONNECT_KINDS)
    scripts = [_good_then_dropped] + [CONNECT_KINDS[kind][0] for kind in kinds]
    with FakeServer(hashes, scripts) as fake:
        client, result = _run(fake, 1 + len(kinds), reconnect_interval_s=0.0)
        assert fake.connections == 1 + len(kinds)  # one reconnect per job start
    _check_local_and_correct(client, result, ["server connection lost: receive failed: peer "
                                              "closed"] + [CONNECT_KINDS[k][1] for k in kinds])


def test_cli_exits_0_with_every_result_when_the_challenge_is_malformed(hashes, token_file,
                                                                      tmp_path):
    out = tmp_path / "run.json"
    script = _challenge(b'{"protocol": 3, "nonce": ' + HUGE_INTEGER + b"}")
    with FakeServer(hashes, [script]) as fake, pytest.raises(SystemExit) as exit_info:
        client_module.main([
            "--server", f"127.0.0.1:{fake.port}", "--jobs", f"{MODEL}:2",
            "--scheduler", "all_server", "--bandwidth-mbps", "50", "--token-file",
            str(token_file), "--profile-repetitions", "0", "--no-calibrate", "--json",
            str(out), "--quiet"])
    assert exit_info.value.code == 0
    document = json.loads(out.read_text())
    assert document["summary"]["fallback"] == 2 and document["summary"]["fallback_reasons"] == {
        "handshake failed: bad handshake from the server: CHALLENGE payload is not readable "
        "JSON: ValueError": 2}
    assert list(document["link"]["server_drops"]) == list(document["summary"]["fallback_reasons"])


# ---- mid-batch -------------------------------------------------------------------------------
def _answer(reply):
    """A genuine handshake and probes; ``reply(session, infer_frame)`` answers the INFER."""
    def script(conn, fake):
        serve_until_infer(handshake(conn, fake.hashes), reply)
    return script


def _result(session, frame, **fields):
    session.send(MessageType.RESULT, request_id=frame.request_id,
                 **({"tensor": torch.zeros(1, 1000)} | fields))


def _raw_reply(make):
    return lambda session, frame: session.conn.sendall(make(session, frame))


def _result_bytes(session, frame, tagged=True, tag=None):
    return raw_frame(MessageType.RESULT, bytes(4000), dtype=DType.FLOAT32, shape=(1, 1000),
                     request_id=frame.request_id, mac=session.send_mac if tagged else None,
                     tag=tag)


MID_BATCH_KINDS = {  # kind: (reply to the first INFER, what the recorded reason says)
    "result-wrong-shape": (lambda s, f: _result(s, f, tensor=torch.zeros(1, 10)),
                           "is float32 (1, 10); expected float32 (1, 1000)"),
    "result-wrong-dtype": (lambda s, f: _result(s, f, tensor=torch.zeros(1, 1000,
                                                                         dtype=torch.float64)),
                           "is float64 (1, 1000)"),
    "result-oversized": (_raw_reply(lambda s, f: raw_frame(
        MessageType.RESULT, dtype=DType.FLOAT32, shape=(1, 4_000_000), payload_len=16_000_000,
        request_id=f.request_id, tag=b"")), "is float32 (1, 4000000)"),
    "result-zero-size-huge-dims": (_raw_reply(lambda s, f: raw_frame(
        MessageType.RESULT, dtype=DType.FLOAT32, shape=(0, HUGE_DIM, HUGE_DIM),
        request_id=f.request_id, mac=s.send_mac)), "exceeds"),
    "result-for-another-request": (lambda s, f: s.send(
        MessageType.RESULT, request_id=f.request_id + 1000, tensor=torch.zeros(1, 1000)),
        "not in flight"),
    "result-nan-elapsed": (lambda s, f: _result(s, f, elapsed_s=math.nan), "not a duration"),
    "result-untagged": (_raw_reply(lambda s, f: _result_bytes(s, f, tagged=False)),
                        "untagged RESULT"),
    "result-bad-tag": (_raw_reply(lambda s, f: _result_bytes(s, f, tagged=False,
                                                             tag=bytes(16))),
                       "tag does not match"),
    "garbage": (_raw_reply(lambda s, f: bytes(70)), "bad magic"),
    "error-huge-integer": (_raw_reply(lambda s, f: raw_frame(
        MessageType.ERROR, b'{"code": ' + HUGE_INTEGER + b"}", mac=s.send_mac)),
        "server error: unreadable ERROR"),
    "unexpected-challenge": (lambda s, f: s.send(MessageType.CHALLENGE, control={}),
                             "unexpected CHALLENGE"),
    "stall-mid-frame": (_raw_reply(lambda s, f: _result_bytes(s, f)[:30]), "timed out"),
    "silent": (lambda s, f: None, "no result for resnet18-"),
    "eof": (lambda s, f: s.conn.shutdown(socket.SHUT_RDWR), "peer closed"),
}


@pytest.mark.parametrize("kind", list(MID_BATCH_KINDS))
def test_hostile_server_mid_batch_cannot_stop_the_batch(hashes, kind):
    reply, fragment = MID_BATCH_KINDS[kind]
    with FakeServer(hashes, [_answer(reply)]) as fake:
        client, result = _run(fake, 2, reconnect_interval_s=0.0)
        assert fake.connections == 2  # the second job reconnected and met the same server
    _check_local_and_correct(client, result, [fragment, fragment])
    assert all(job.reason.startswith("server connection lost: ") for job in result.jobs)


PROBE_KINDS = {  # kind: (reply to the first PROBE, what the recorded reason says)
    "unanswered": (lambda s, f: None, "link probe failed: no PROBE_ACK within 2.0 s"),
    "ack-with-payload": (lambda s, f: s.send(MessageType.PROBE_ACK, tensor=torch.zeros(8)),
                         "PROBE_ACK with a payload"),
}


@pytest.mark.parametrize("kind", list(PROBE_KINDS))
def test_server_failing_the_link_probe_is_dropped(hashes, kind):
    reply, fragment = PROBE_KINDS[kind]

    def script(conn, fake):
        serve_until_infer(handshake(conn, fake.hashes), lambda s, f: None, on_probe=reply)

    with FakeServer(hashes, [script]) as fake:
        client, result = _run(fake, 1, probe=True, reconnect_interval_s=60.0)  # no reconnect
    _check_local_and_correct(client, result, [fragment])


def test_a_receiver_that_dies_fails_the_link_at_once(server):
    """A bug that raises in the receiver thread (here in the result callback) is noticed
    when it happens, not after the 60 s result watchdog."""
    failed = threading.Event()
    reasons = []

    def on_result(*args):
        raise RuntimeError("bug in the result handler")

    def on_failure(link, reason):
        reasons.append(reason)
        failed.set()

    split = server.models[MODEL].split
    link = ServerLink("127.0.0.1", server.port, TOKEN,
                      {MODEL: server.models[MODEL].weights_sha256}, ShapedSender(None),
                      on_result, on_failure).connect()
    cut = split.num_segments - 1
    start = time.monotonic()
    link.send_infer(1, MODEL, cut, torch.randn(split.boundary_shape(cut)))
    assert failed.wait(10) and time.monotonic() - start < 10
    assert reasons == ["receiver crashed: RuntimeError: bug in the result handler"]
    link.receiver.join(5)
    assert not link.receiver.is_alive() and not link.alive
