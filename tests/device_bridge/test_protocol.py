"""Wire protocol: exact round-trips for every dtype and shape, and rejection of bad frames."""

import socket
import struct
import threading
import time
import tracemalloc

import pytest
import torch

from device_bridge import protocol
from device_bridge.protocol import HEADER, FrameMac, IntegrityError, MessageType, ProtocolError
from device_bridge.shaping import ShapedSender, TokenBucket

SHAPES = [(), (0,), (1,), (7,), (3, 5), (1, 64, 56, 56), (2, 1, 3, 1, 2, 1, 2, 3),
          (0, 1000), (2, 0, 3), (0, 3, 224, 224)]


def _random_tensor(dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(hash((str(dtype), shape)) % 2**31)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    if dtype.is_floating_point:
        return torch.randn(shape, generator=generator).to(dtype)
    info = torch.iinfo(dtype)
    return torch.randint(max(info.min, -1000), min(info.max, 1000), shape, generator=generator,
                         dtype=torch.int64).to(dtype)


@pytest.fixture()
def pair():
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def _exchange(pair, **fields) -> protocol.Frame:
    left, right = pair
    result = {}
    reader = threading.Thread(target=lambda: result.update(frame=protocol.read_frame(right)))
    reader.start()
    protocol.send_frame(left, MessageType.RESULT, **fields)
    reader.join(10)
    return result["frame"]


@pytest.mark.parametrize("dtype", list(protocol.TORCH_DTYPES.values()), ids=str)
def test_round_trip_every_dtype_and_shape(pair, dtype):
    for shape in SHAPES:
        tensor = _random_tensor(dtype, shape)
        frame = _exchange(pair, tensor=tensor, request_id=2**40 + 3, model_id=7, cut=65535,
                          elapsed_s=0.125)
        assert frame.msg_type == MessageType.RESULT
        assert (frame.request_id, frame.model_id, frame.cut, frame.elapsed_s) == (
            2**40 + 3, 7, 65535, 0.125)
        assert frame.tensor.dtype == dtype and tuple(frame.tensor.shape) == shape
        assert torch.equal(frame.tensor, tensor)


def test_non_contiguous_tensor_round_trips(pair):
    tensor = torch.arange(24, dtype=torch.float32).reshape(4, 6).t()
    assert torch.equal(_exchange(pair, tensor=tensor).tensor, tensor)


def test_payload_is_raw_bytes_not_pickle():
    tensor = torch.ones(1, 64, 56, 56)
    header, payload = protocol.encode_frame(MessageType.INFER, tensor=tensor)
    assert len(header) == HEADER.size == 70
    assert len(payload) == 802816  # exactly numel * 4: no pickle framing


def _header(**overrides) -> bytes:
    fields = {"magic": protocol.MAGIC, "version": protocol.VERSION, "msg_type": int(MessageType.INFER),
              "dtype": int(protocol.DType.FLOAT32), "ndim": 1, "shape": [4] + [0] * 7,
              "payload_len": 16}
    fields.update(overrides)
    return HEADER.pack(fields["magic"], fields["version"], fields["msg_type"],
                       fields.get("flags", 0), 0, 0, 1, 0.0,
                       fields["dtype"], fields["ndim"], *fields["shape"], fields["payload_len"])


@pytest.mark.parametrize("overrides, reason", [
    ({"magic": b"HTTP"}, "bad magic"),
    ({"version": 9}, "unsupported protocol version"),
    ({"flags": 2}, "unknown flags"),
    ({"msg_type": 99}, "99"),
    ({"dtype": 42}, "42"),
    ({"ndim": 9}, "ndim"),
    ({"payload_len": 15}, "payload length 15"),
    ({"payload_len": 2**40, "shape": [2**30, 2**10] + [0] * 6, "ndim": 2}, "exceeds"),
    ({"shape": [4, 0, 3] + [0] * 5}, "beyond ndim"),
    ({"dtype": 0, "ndim": 0, "shape": [0] * 8, "payload_len": 10**6}, "too large"),
])
def test_malformed_headers_are_rejected_before_reading_the_payload(overrides, reason):
    with pytest.raises(ProtocolError, match=reason):
        protocol.decode_header(_header(**overrides), protocol.DEFAULT_MAX_FRAME_BYTES)


def test_truncated_frame_raises_connection_closed(pair):
    left, right = pair
    header, payload = protocol.encode_frame(MessageType.INFER, tensor=torch.ones(100))
    left.sendall(header + payload[:50])
    left.shutdown(socket.SHUT_WR)
    with pytest.raises(protocol.ConnectionClosed, match="50 of 400"):
        protocol.read_frame(right)


def test_session_keys_depend_on_token_both_nonces_and_the_challenge():
    token, server_nonce, client_nonce = b"k" * 32, b"s" * 32, b"c" * 32
    keys = protocol.session_keys(token, server_nonce, client_nonce, b"{}")
    assert keys[0] != keys[1]  # one key per direction: a frame cannot be reflected
    for other in [(b"x" * 32, server_nonce, client_nonce, b"{}"),
                  (token, b"t" * 32, client_nonce, b"{}"),
                  (token, server_nonce, b"d" * 32, b"{}"),
                  (token, server_nonce, client_nonce, b"{ }")]:
        assert set(protocol.session_keys(*other)).isdisjoint(keys)


def test_token_file_errors_name_the_file(tmp_path):
    short = tmp_path / "short"
    short.write_text("abc")
    short.chmod(0o600)
    with pytest.raises(ValueError, match="short: token has 3 bytes; use at least 32"):
        protocol.read_token_file(str(short))
    with pytest.raises(ValueError, match="missing"):
        protocol.read_token_file(str(tmp_path / "missing"))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620])
def test_token_file_open_to_group_or_others_is_refused(tmp_path, mode):
    path = tmp_path / "token"
    path.write_text("a" * 64 + "\n")
    path.chmod(mode)
    with pytest.raises(ValueError, match=f"token: mode {mode:04o} lets group or others access "
                                         f"it; chmod 600"):
        protocol.read_token_file(str(path))
    path.chmod(0o600)
    assert protocol.read_token_file(str(path)) == b"a" * 64


def test_tokens_under_32_bytes_are_refused_everywhere():
    from device_bridge.server import OffloadServer

    with pytest.raises(ValueError, match="token has 31 bytes; use at least 32"):
        protocol.check_token(b"x" * 31)
    protocol.check_token(b"x" * 32)
    with pytest.raises(ValueError, match="token has 16 bytes"):  # before any model loads
        OffloadServer(("alexnet",), b"x" * 16)


def test_token_bucket_never_beats_its_rate(pair):
    left, right = pair
    size, rate_mbps = 200_000, 16.0
    drained = threading.Thread(target=protocol.recv_exact, args=(right, size))
    drained.start()
    sender = ShapedSender(rate_mbps, latency_s=0.02)
    start = time.perf_counter()
    sender.send_message(left, [b"\0" * size])
    elapsed = time.perf_counter() - start
    drained.join(10)
    ideal = 0.02 + 8 * size / (rate_mbps * 1e6)  # 0.12 s
    assert elapsed >= ideal
    assert elapsed < 5 * ideal  # loose: the machine is shared


def test_token_bucket_rejects_bad_settings():
    with pytest.raises(ValueError, match="rate_mbps"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="latency_s"):
        ShapedSender(1.0, latency_s=-1)


def test_struct_layout_is_big_endian_and_fixed():
    assert HEADER.format == "!4sBBHHHQdBB8IQ"
    assert struct.calcsize(HEADER.format) == 70


def test_tagged_frames_survive_the_token_bucket_chunking(pair):
    left, right = pair
    tensor = torch.randn(3, 5000)  # 60 kB: the 70-byte header rides in the first 8 kB chunk
    key = b"k" * 32
    reader = protocol.FrameReader(right, mac=FrameMac(key))
    received = []
    thread = threading.Thread(target=lambda: received.extend(reader.read() for _ in range(2)))
    thread.start()
    sender, mac = ShapedSender(200.0), FrameMac(key)
    sent = [sender.send_message(left, protocol.encode_frame(
        MessageType.INFER, request_id=9 + i, tensor=tensor, tagged=True), mac) for i in range(2)]
    thread.join(10)
    assert sent == [70 + tensor.numel() * 4 + protocol.TAG_BYTES] * 2
    assert [frame.request_id for frame in received] == [9, 10]
    assert all(torch.equal(frame.tensor, tensor) for frame in received)


def _send_until_closed(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the reader stopped at a bad frame and closed


def _tagged_wire(mac: FrameMac, tensor: torch.Tensor, request_id: int) -> bytearray:
    buffers = protocol.encode_frame(MessageType.RESULT, request_id=request_id, tensor=tensor,
                                    tagged=True)
    return bytearray(b"".join(bytes(b) for b in buffers) + mac.tag(buffers))


@pytest.mark.parametrize("size", [10, 100_000], ids=["small", "large"])
@pytest.mark.parametrize("kind", ["flip-header", "flip-payload", "flip-tag", "replay",
                                  "reorder", "foreign", "untagged"])
def test_reader_rejects_tampered_replayed_reordered_and_foreign_frames(pair, kind, size):
    left, right = pair
    key, tensor = b"k" * 32, torch.randn(size)
    sender = FrameMac(key)
    first = _tagged_wire(sender, tensor, 1)
    second = _tagged_wire(sender, tensor, 2)
    bad = {"flip-header": first, "flip-payload": first, "flip-tag": first,
           "replay": first, "reorder": second,
           "foreign": _tagged_wire(FrameMac(b"x" * 32), tensor, 1),
           "untagged": bytearray(b"".join(bytes(b) for b in protocol.encode_frame(
               MessageType.RESULT, request_id=1, tensor=tensor)))}[kind]
    position = {"flip-header": 12, "flip-payload": 70 + size, "flip-tag": -1}.get(kind)
    if position is not None:
        bad[position] ^= 0x01
    reader = protocol.FrameReader(right, mac=FrameMac(key))
    stream = (bytes(first) if kind == "replay" else b"") + bytes(bad)
    sender_thread = threading.Thread(target=_send_until_closed, args=(left, stream))
    sender_thread.start()
    if kind == "replay":  # the genuine frame is accepted once
        assert reader.read().request_id == 1
    with pytest.raises(IntegrityError):
        reader.read()
    right.close()  # an untagged frame is refused at its header: unblock the sender
    sender_thread.join(10)


def test_a_lying_length_reserves_only_what_arrived(pair):
    left, right = pair
    claimed = 60 * 2**20
    header = HEADER.pack(protocol.MAGIC, protocol.VERSION, int(MessageType.RESULT), 0, 0, 0, 1,
                         0.0, int(protocol.DType.UINT8), 1, claimed, *[0] * 7, claimed)
    sent = header + b"\0" * 700_000

    def send() -> None:
        left.sendall(sent)
        left.shutdown(socket.SHUT_WR)

    tracemalloc.start()
    sender = threading.Thread(target=send)
    sender.start()
    try:
        with pytest.raises(protocol.ConnectionClosed, match="of"):
            protocol.FrameReader(right, max_frame_bytes=claimed).read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        sender.join(10)
    # 700 kB arrived: the buffer grew 256 KiB -> 512 KiB -> 1 MiB (copying while growing)
    assert peak < 2 * 2**20


def test_payload_is_a_view_of_the_tensor_memory():
    tensor = torch.randn(4, 8)
    _, payload = protocol.encode_frame(MessageType.INFER, tensor=tensor)
    tensor[0, 0] = 123.0  # visible through the payload: nothing was copied
    assert torch.frombuffer(bytearray(payload), dtype=torch.float32)[0] == 123.0


def test_reusing_reader_serves_changing_shapes_and_dtypes(pair):
    left, right = pair
    reader = protocol.FrameReader(right, reuse_payload=True)
    tensors = [torch.randn(2, 3), torch.randn(2, 3), torch.arange(40, dtype=torch.int16),
               torch.randn(1, 64, 8, 8), torch.randn(2, 3).half(), torch.randn(2, 3)]
    for tensor in tensors:
        protocol.send_frame(left, MessageType.INFER, tensor=tensor)
        frame = reader.read()
        assert frame.tensor.dtype == tensor.dtype
        assert torch.equal(frame.tensor, tensor)


def test_fresh_buffers_keep_earlier_tensors_intact(pair):
    left, right = pair
    reader = protocol.FrameReader(right)
    first, second = torch.randn(5), torch.randn(5)
    for tensor in (first, second):
        protocol.send_frame(left, MessageType.RESULT, tensor=tensor)
    kept = reader.read().tensor
    assert torch.equal(reader.read().tensor, second)
    assert torch.equal(kept, first)


def test_truncated_payload_into_a_reused_buffer_raises(pair):
    left, right = pair
    reader = protocol.FrameReader(right, reuse_payload=True)
    header, payload = protocol.encode_frame(MessageType.INFER, tensor=torch.ones(100))
    left.sendall(header + payload[:60])
    left.shutdown(socket.SHUT_WR)
    with pytest.raises(protocol.ConnectionClosed, match="60 of 400"):
        reader.read()


def test_an_untagged_channel_reads_untagged_frames_and_refuses_tagged_ones(pair):
    left, right = pair
    tensor = torch.randn(1000)
    untagged = b"".join(bytes(b) for b in protocol.encode_frame(
        MessageType.RESULT, request_id=1, tensor=tensor))
    tagged = _tagged_wire(FrameMac(b"k" * 32), tensor, 2)
    reader = protocol.FrameReader(right, untagged_channel=True)
    sender_thread = threading.Thread(target=_send_until_closed,
                                     args=(left, untagged + bytes(tagged)))
    sender_thread.start()
    frame = reader.read()
    assert frame.request_id == 1 and torch.equal(frame.tensor, tensor) and frame.tag == b""
    with pytest.raises(ProtocolError, match="tagged RESULT on a channel agreed untagged"):
        reader.read()
    right.close()
    sender_thread.join(10)
    with pytest.raises(ValueError, match="either tagged"):
        protocol.FrameReader(right, mac=FrameMac(b"k" * 32), untagged_channel=True)


def test_keyed_blake2b_frame_tags_check_like_hmac(pair):
    left, right = pair
    tensor, key = torch.randn(100_000), b"k" * 32
    reader = protocol.FrameReader(right, mac=FrameMac(key, "blake2b"))
    wire = _tagged_wire(FrameMac(key, "blake2b"), tensor, 1)
    hmac_sha256 = FrameMac(key)
    hmac_sha256.start()  # the right sequence number (1), the other algorithm
    wire += _tagged_wire(hmac_sha256, tensor, 2)
    sender_thread = threading.Thread(target=_send_until_closed, args=(left, bytes(wire)))
    sender_thread.start()
    assert torch.equal(reader.read().tensor, tensor)
    with pytest.raises(IntegrityError):
        reader.read()
    right.close()
    sender_thread.join(10)
