"""Framed binary wire protocol between the device runtime and the offloading server.

Every message is one frame: a fixed 70-byte big-endian header, then ``payload_len`` bytes,
then (when flag ``TAGGED`` is set) a 16-byte tag.

    offset size field
    0      4    magic         b"PSDB"
    4      1    version       3
    5      1    msg_type      MessageType
    6      2    flags         bit 0 TAGGED: a tag follows the payload; other bits 0
    8      2    model_id      index into the model list agreed in the handshake
    10     2    cut           cut index (INFER): the tensor crossed cut ``cut``
    12     8    request_id    echoed in the RESULT / ERROR for that request
    20     8    elapsed_s     float64; server compute seconds in a RESULT, else 0
    28     1    dtype         DType code; NONE for JSON control payloads
    29     1    ndim          0..8
    30     32   shape         8 x uint32, unused dims 0
    62     8    payload_len   bytes that follow (the tag not included)

Tensor payloads are the raw C-order bytes of the tensor (little-endian, as torch stores
them on every supported platform), sent from the tensor's own memory in one ``sendmsg`` with
the header; the receiver (``FrameReader``) checks ``payload_len == numel * itemsize`` before
reading and ``recv_into``s the payload straight into the memory of a tensor built with
``torch.frombuffer``, in a buffer that grows only as bytes arrive: nothing received is ever
unpickled, and a header's claimed length reserves no memory the peer has not sent.
Control payloads (CHALLENGE, AUTH, WELCOME, ERROR) are small UTF-8 JSON objects.

Handshake (mutual: each side answers the other's nonce):

1. server -> CHALLENGE ``{"protocol": 3, "nonce": hex(32 random bytes) Ns, "models":
   {name: weights_sha256}, "frame_tags": bool}`` (untagged); ``frame_tags`` is false exactly
   when the server's end of the connection is TLS;
2. client -> AUTH ``{"nonce": hex Nc, "models": {name: weights_sha256}}``, tagged under the
   client-to-server key; a client whose own connection is not TLS refuses a CHALLENGE with
   ``frame_tags`` false before sending it (a downgrade to untagged frames on plain TCP);
3. server -> WELCOME ``{"models": [names in the client's order], "device": ...,
   "whole_model_s": {...}, "frame_tags": bool}``, tagged under the server-to-client key
   (model_id = position in that list; ``frame_tags`` must repeat the CHALLENGE's), or an
   untagged ERROR ``{"code": ...}`` and close.

The keys are ``HMAC-SHA256(token, label | Ns | Nc | SHA-256(CHALLENGE payload))`` with one
label per direction, so a valid AUTH tag proves the client knows the token and saw this
challenge (``frame_tags`` included), and a valid WELCOME tag proves the same of the server.
With ``frame_tags`` every frame from AUTH on carries ``tag = HMAC-SHA256(direction key, seq ||
header || payload)[:16]``, where ``seq`` is the frame's implicit 64-bit position in its
direction (0 for AUTH and WELCOME): a flipped bit, a replayed, reordered or dropped frame, or
a frame of another session fails the tag and closes the connection. Without it (TLS) only
AUTH and WELCOME are tagged, as the proofs of the token, and every later frame is untagged (a
tagged one is a ProtocolError): TLS 1.3 records are AEAD with their own sequence numbers and
give the same integrity, replay and reorder protection, end to end with the pinned server.
Afterwards the client sends INFER and PROBE frames (payload discarded, answered by a
PROBE_ACK) in any order; the server answers each INFER with a RESULT.

ERROR payloads carry a fixed ``code`` (``ErrorCode``); a ``reason`` text is added only for
a peer that has proven the token, and never holds internal exception text.

Everything a peer sends is untrusted: every way a frame can be malformed (header, JSON,
tensor) raises ``ProtocolError`` before the frame is returned, and text the peer chose goes
into logs and exception messages only through ``peer_text`` (``repr``, cut short). A
``FrameReader`` may be given an ``admit`` check (the receiver's limits, applied to the header
before any payload byte is read), a ``ByteBudget`` shared by connections (payload buffers
are charged before they are allocated) and a per-frame deadline; ``send_frame`` takes a
deadline for the whole frame.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import ssl
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import torch

MAGIC = b"PSDB"
VERSION = 3
MAX_NDIM = 8
HEADER = struct.Struct("!4sBBHHHQdBB8IQ")
FLAG_TAGGED = 0x1
TAG_BYTES = 16
NONCE_BYTES = 32
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
MAX_CONTROL_BYTES = 64 * 1024
# a payload buffer starts at this size and doubles as bytes arrive, up to payload_len
INITIAL_PAYLOAD_BYTES = 256 * 1024
# larger frames leave before their tag is computed, so the receiver hashes what has
# arrived while the sender hashes the same bytes (two cores instead of one after the other)
OVERLAP_TAG_MIN_BYTES = 64 * 1024
KEY_LABELS = (b"pipesched-v3 client-to-server|", b"pipesched-v3 server-to-client|")
MIN_TOKEN_BYTES = 32
PEER_TEXT_CHARS = 80
# a TLS socket has no sendmsg; under a deadline its bytes leave in pieces of this size
TLS_SEND_BYTES = 64 * 1024


class MessageType(IntEnum):
    CHALLENGE = 1
    AUTH = 2
    WELCOME = 3
    INFER = 4
    RESULT = 5
    ERROR = 6
    PROBE = 7
    PROBE_ACK = 8


class DType(IntEnum):
    NONE = 0
    FLOAT32 = 1
    FLOAT16 = 2
    BFLOAT16 = 3
    FLOAT64 = 4
    INT64 = 5
    INT32 = 6
    INT16 = 7
    INT8 = 8
    UINT8 = 9
    BOOL = 10


class ErrorCode(StrEnum):
    """The only thing an ERROR tells a peer that has not proven the token."""
    BAD_FRAME = "bad_frame"                  # malformed or unexpected frame
    AUTH_FAILED = "auth_failed"              # AUTH tag wrong: the peer lacks the token
    HANDSHAKE_TIMEOUT = "handshake_timeout"  # the whole handshake outlived its deadline
    SERVER_BUSY = "server_busy"              # a cap or a shared budget is reached
    INTEGRITY = "integrity"                  # a frame failed its tag after the handshake
    IDLE_TIMEOUT = "idle_timeout"            # authenticated, then silent too long
    FRAME_TIMEOUT = "frame_timeout"          # a frame's bytes outlived the frame deadline
    BAD_REQUEST = "bad_request"              # authenticated; ``reason`` says what
    INTERNAL = "internal_error"              # logged on the server, no detail sent


_DTYPE_NAMES = {DType.FLOAT32: "float32", DType.FLOAT16: "float16", DType.BFLOAT16: "bfloat16",
                DType.FLOAT64: "float64", DType.INT64: "int64", DType.INT32: "int32",
                DType.INT16: "int16", DType.INT8: "int8", DType.UINT8: "uint8",
                DType.BOOL: "bool"}
_TABLES = ("TORCH_DTYPES", "DTYPE_CODES", "ITEMSIZE", "NUMPY_CODES")


@cache
def _dtype_tables() -> tuple[dict, dict, dict, dict]:
    """``TORCH_DTYPES`` (code -> torch dtype), ``DTYPE_CODES`` (its inverse), ``ITEMSIZE`` and
    ``NUMPY_CODES`` (numpy dtypes ``Tensor.numpy()`` exposes directly; bfloat16 goes through a
    uint8 view), built on first use so that importing the protocol does not load torch."""
    import torch

    torch_dtypes = {code: getattr(torch, name) for code, name in _DTYPE_NAMES.items()}
    itemsize = {code: torch.empty((), dtype=dtype).element_size()
                for code, dtype in torch_dtypes.items()}
    numpy_codes = {np.dtype(torch.empty((), dtype=dtype).numpy().dtype): code
                   for code, dtype in torch_dtypes.items() if dtype != torch.bfloat16}
    return torch_dtypes, {v: k for k, v in torch_dtypes.items()}, itemsize, numpy_codes


def __getattr__(name: str) -> dict:
    if name in _TABLES:
        return _dtype_tables()[_TABLES.index(name)]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MESSAGE_TYPES = {int(member): member for member in MessageType}
DTYPES = {int(member): member for member in DType}
_ZEROS = (0,) * MAX_NDIM
_EMPTY = memoryview(b"")


class ProtocolError(ValueError):
    """A frame that breaks the protocol; the connection that sent it must be closed."""


class IntegrityError(ProtocolError):
    """A frame whose tag does not match: tampered, replayed, reordered or foreign."""


class ResourceLimit(ProtocolError):
    """A well-formed frame the receiver will not take now: a shared budget or cap is reached."""


class ConnectionClosed(ConnectionError):
    """The peer closed the connection (possibly in the middle of a frame)."""


class IdleTimeout(TimeoutError):
    """No byte of a next frame arrived in time; nothing of the stream was consumed."""


def peer_text(value: object, limit: int = PEER_TEXT_CHARS) -> str:
    """``repr`` of something the peer chose, cut to ``limit`` characters: one safe log line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


class ByteBudget:
    """Bytes of payload buffers held by all connections together, at most ``limit``."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"a byte budget must be >= 1, got {limit}")
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def charge(self, count: int) -> None:
        """Reserve ``count`` bytes or raise ResourceLimit (nothing reserved)."""
        with self._lock:
            if self.used + count > self.limit:
                raise ResourceLimit(f"payload buffers of all connections would hold "
                                    f"{self.used + count} bytes; the budget is {self.limit}")
            self.used += count

    def release(self, count: int) -> None:
        with self._lock:
            self.used -= count


@dataclass
class Frame:
    msg_type: MessageType
    request_id: int = 0
    model_id: int = 0
    cut: int = 0
    elapsed_s: float = 0.0
    tensor: torch.Tensor | None = None
    payload: bytes = b""
    header: bytes = b""  # kept with ``tag`` when the reader could not check it (handshake)
    tag: bytes = b""

    def json(self) -> dict[str, Any]:
        # ValueError covers bad UTF-8, bad JSON and an integer of more than 4300 digits
        try:
            value = json.loads(self.payload.decode("utf-8"))
        except (ValueError, RecursionError) as error:
            raise ProtocolError(f"{self.msg_type.name} payload is not readable JSON: "
                                f"{type(error).__name__}") from None
        if not isinstance(value, dict):
            raise ProtocolError(f"{self.msg_type.name} payload must be a JSON object")
        return value


# the per-frame MAC; keyed BLAKE2b is the benchmark's comparison (docs/device_bridge.md)
FRAME_MACS: dict[str, Callable[[bytes], Any]] = {
    "hmac-sha256": lambda key: hmac.new(key, digestmod="sha256"),
    "blake2b": lambda key: hashlib.blake2b(key=key, digest_size=TAG_BYTES),
}


class FrameMac:
    """One direction of a session: ``HMAC-SHA256(key, seq || header || payload)[:16]`` with
    ``seq`` counting that direction's frames from 0 (never sent: both ends count).

    HMAC-SHA256 is the fastest keyed MAC of the standard library not built on a deprecated
    hash where the CPU has SHA instructions (OpenSSL; see docs/device_bridge.md, "Channel
    choice"). ``algorithm`` picks another entry of ``FRAME_MACS`` (the benchmark's)."""

    def __init__(self, key: bytes, algorithm: str = "hmac-sha256"):
        self._keyed = FRAME_MACS[algorithm](key)
        self.sequence = 0

    def start(self) -> Any:
        """A MAC for the next frame in this direction (consumes its sequence number)."""
        mac = self._keyed.copy()
        mac.update(self.sequence.to_bytes(8, "big"))
        self.sequence += 1
        return mac

    @staticmethod
    def finish(mac: Any) -> bytes:
        return mac.digest()[:TAG_BYTES]

    def tag(self, buffers: list[bytes | memoryview]) -> bytes:
        mac = self.start()
        for buffer in buffers:
            mac.update(buffer)
        return self.finish(mac)

    def check(self, frame: Frame) -> None:
        """Check a control frame read before the key was known (AUTH, WELCOME)."""
        expected = self.tag([frame.header, frame.payload])
        if not frame.tag or not hmac.compare_digest(expected, frame.tag):
            raise IntegrityError(f"{frame.msg_type.name} tag does not match")


def session_keys(token: bytes, server_nonce: bytes, client_nonce: bytes,
                 challenge_payload: bytes) -> tuple[bytes, bytes]:
    """(client-to-server, server-to-client) keys; only a holder of ``token`` can derive them."""
    transcript = server_nonce + client_nonce + hashlib.sha256(challenge_payload).digest()
    client_to_server, server_to_client = (hmac.digest(token, label + transcript, "sha256")
                                          for label in KEY_LABELS)
    return client_to_server, server_to_client


def parse_nonce(value: object) -> bytes:
    try:
        nonce = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        nonce = b""
    if len(nonce) != NONCE_BYTES:
        raise ProtocolError(f"nonce must be {NONCE_BYTES} bytes in hex")
    return nonce


def _wire_array(tensor: torch.Tensor) -> np.ndarray | None:
    """A C-contiguous numpy array sharing the tensor's memory (one torch call), or None when
    the tensor needs the general path (another device, autograd, bfloat16, strided)."""
    try:
        array = tensor.numpy()
    except (RuntimeError, TypeError):
        return None
    return array if array.flags.c_contiguous else None


def _array_bytes(array: np.ndarray) -> memoryview:
    # a view with a zero in a multi-dimensional shape cannot be cast to bytes
    return memoryview(array).cast("B") if array.size else _EMPTY


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's raw bytes, without a copy when it is already contiguous on the CPU."""
    array = _wire_array(tensor)
    if array is None:
        import torch

        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        array = flat.view(torch.uint8).numpy() if flat.numel() else np.empty(0, np.uint8)
    return _array_bytes(array)


def encode_frame(msg_type: MessageType, *, request_id: int = 0, model_id: int = 0, cut: int = 0,
                 elapsed_s: float = 0.0, tensor: torch.Tensor | None = None,
                 control: dict[str, Any] | None = None,
                 tagged: bool = False) -> list[bytes | memoryview]:
    """Header and payload as two buffers, sent together by one ``sendmsg``; the payload is a
    view of the tensor's own memory (no copy for a contiguous CPU tensor). ``tagged`` sets
    the flag that announces a tag after the payload (see ``send_tagged``)."""
    if tensor is not None:
        _, dtype_codes, _, numpy_codes = _dtype_tables()
        array = _wire_array(tensor)
        if array is not None:  # the common case, read off the numpy view
            dtype, shape = numpy_codes.get(array.dtype), array.shape
        else:
            dtype, shape = dtype_codes.get(tensor.dtype), tuple(tensor.shape)
        if dtype is None:
            raise ValueError(f"unsupported tensor dtype {tensor.dtype}")
        ndim = len(shape)
        if ndim > MAX_NDIM:
            raise ValueError(f"tensor has {ndim} dims; at most {MAX_NDIM}")
        payload = _array_bytes(array) if array is not None else tensor_bytes(tensor)
        shape = (*shape, *_ZEROS[ndim:])
    else:
        payload = json.dumps(control).encode() if control is not None else b""
        dtype, ndim, shape = DType.NONE, 0, _ZEROS
    header = HEADER.pack(MAGIC, VERSION, msg_type, FLAG_TAGGED if tagged else 0, model_id, cut,
                         request_id, elapsed_s, dtype, ndim, *shape, len(payload))
    return [header, payload]


def _time_left(sock: socket.socket, deadline: float | None) -> None:
    """Give the socket's next blocking call what is left until ``deadline`` (if any)."""
    if deadline is None:
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    sock.settimeout(remaining)


def recv_exact_into(sock: socket.socket, view: memoryview, mac: Any = None,
                    deadline: float | None = None) -> None:
    """Fill ``view`` (a writable byte view) from ``sock`` or raise ConnectionClosed; each
    received piece also feeds ``mac``. With ``deadline`` (``time.monotonic()``) the whole
    read, however the bytes trickle in, raises TimeoutError once it has passed."""
    size = len(view)
    received = 0
    while received < size:
        _time_left(sock, deadline)
        count = sock.recv_into(view[received:], size - received)
        if count == 0:
            raise ConnectionClosed(f"peer closed after {received} of {size} bytes")
        if mac is not None:
            mac.update(view[received:received + count])
        received += count


def recv_exact(sock: socket.socket, size: int) -> bytearray:
    """Read exactly ``size`` bytes into a new buffer or raise ConnectionClosed."""
    buffer = bytearray(size)
    recv_exact_into(sock, memoryview(buffer))
    return buffer


class Header(NamedTuple):
    msg_type: MessageType
    request_id: int
    model_id: int
    cut: int
    elapsed_s: float
    dtype: DType
    shape: tuple[int, ...]
    payload_len: int
    tagged: bool


Admit = Callable[[Header], None]


def decode_header(header: bytes | bytearray | memoryview, max_frame_bytes: int) -> Header:
    (magic, version, type_code, flags, model_id, cut, request_id, elapsed_s, dtype_code, ndim,
     *rest) = HEADER.unpack_from(header)
    shape, payload_len = rest[:MAX_NDIM], rest[MAX_NDIM]
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}")
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version}")
    if flags & ~FLAG_TAGGED:
        raise ProtocolError(f"unknown flags {flags:#x}")
    msg_type, dtype = MESSAGE_TYPES.get(type_code), DTYPES.get(dtype_code)
    if msg_type is None:
        raise ProtocolError(f"{type_code} is not a valid MessageType")
    if dtype is None:
        raise ProtocolError(f"{dtype_code} is not a valid DType")
    if ndim > MAX_NDIM:
        raise ProtocolError(f"ndim {ndim} > {MAX_NDIM}")
    if payload_len > max_frame_bytes:
        raise ProtocolError(f"payload of {payload_len} bytes exceeds the {max_frame_bytes} limit")
    if dtype == DType.NONE:
        if ndim != 0:
            raise ProtocolError("control frame with a shape")
        if payload_len > MAX_CONTROL_BYTES:
            raise ProtocolError(f"control payload of {payload_len} bytes is too large")
    else:
        _check_tensor_header(dtype, shape, ndim, payload_len, max_frame_bytes)
    return Header(msg_type, request_id, model_id, cut, elapsed_s, dtype, tuple(shape[:ndim]),
                  payload_len, bool(flags & FLAG_TAGGED))


def _check_tensor_header(dtype: DType, shape: tuple[int, ...], ndim: int, payload_len: int,
                         max_frame_bytes: int) -> None:
    numel = bounded = 1
    for s in shape[:ndim]:
        numel *= s
        bounded *= max(s, 1)
    itemsize = _dtype_tables()[2][dtype]
    if numel * itemsize != payload_len:
        raise ProtocolError(
            f"payload length {payload_len} != {numel} x {itemsize} bytes for shape "
            f"{tuple(shape[:ndim])}")
    if any(shape[ndim:]):
        raise ProtocolError("non-zero shape entries beyond ndim")
    # a zero-size shape is bounded as if each 0 were 1, so its other dims stay frame-sized
    # (a (0, 2**32-1, 2**32-1) header would otherwise overflow torch's stride computation)
    if bounded * itemsize > max_frame_bytes:
        raise ProtocolError(f"shape {tuple(shape[:ndim])} exceeds the {max_frame_bytes} "
                            f"byte limit")


def _tensor_over(buffer: bytearray | None, dtype: DType, shape: tuple[int, ...],
                 count: int) -> torch.Tensor:
    """A tensor over ``buffer`` (None: an empty tensor) as a ProtocolError if torch refuses."""
    import torch

    torch_dtype = _dtype_tables()[0][dtype]
    try:
        if buffer is None:
            return torch.empty(shape, dtype=torch_dtype)
        return torch.frombuffer(buffer, dtype=torch_dtype, count=count).view(shape)
    except (RuntimeError, ValueError) as error:
        raise ProtocolError(f"no {dtype.name} tensor of shape {shape}: "
                            f"{type(error).__name__}") from None


class FrameReader:
    """Reads the frames of one socket; the payload lands in its tensor's memory.

    The header is read into a fixed 70-byte buffer and fully validated before any payload
    byte is read: by ``decode_header`` and then by ``admit`` (the receiver's own limits; it
    raises ProtocolError). The payload is received into a buffer that starts at
    ``INITIAL_PAYLOAD_BYTES`` and doubles as bytes arrive, so memory follows what the peer
    really sent, not what its header claims; the tensor is built over it with
    ``torch.frombuffer`` (no copy).

    With ``mac`` (the connection's receiving ``FrameMac``) every frame must be tagged: the
    MAC is fed as each piece arrives and the tag is checked once the payload is in
    (``IntegrityError`` otherwise; the frame is never returned). With ``untagged_channel``
    (a TLS session that agreed on untagged frames) a tagged frame is a ProtocolError, read no
    further. With neither (the handshake), a tagged frame's header and tag are kept on the
    Frame for a later ``FrameMac.check``.

    With ``reuse_payload`` one buffer serves every frame, and the tensor over it is kept per
    (dtype, shape), so a shape seen before costs no allocation and no tensor construction. A
    returned tensor is then only valid until the next ``read``: for a consumer that is done
    with a frame before reading the next (the server). Without it each payload gets its own
    buffer and its tensor may be kept. With ``budget`` (``reuse_payload`` only) the buffer
    is charged to it before it is allocated (``ResourceLimit`` when it cannot be) and given
    back by ``release``.

    Time: a frame's first byte may wait ``idle_timeout_s`` (None: the socket's own timeout;
    ``IdleTimeout`` when nothing came), the rest of it must arrive within
    ``frame_timeout_s`` of that byte (``TimeoutError``), however the bytes trickle in.
    """

    MAX_CACHED_SHAPES = 256

    def __init__(self, sock: socket.socket, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 reuse_payload: bool = False, mac: FrameMac | None = None, *,
                 admit: Admit | None = None, budget: ByteBudget | None = None,
                 idle_timeout_s: float | None = None, frame_timeout_s: float | None = None,
                 untagged_channel: bool = False):
        if budget is not None and not reuse_payload:
            raise ValueError("a byte budget needs reuse_payload (buffers handed out are not "
                             "tracked)")
        if untagged_channel and mac is not None:
            raise ValueError("a channel is either tagged (mac) or untagged, not both")
        self.sock = sock
        self.max_frame_bytes = max_frame_bytes
        self.reuse_payload = reuse_payload
        self.mac = mac
        self.untagged_channel = untagged_channel
        self.admit = admit
        self.budget = budget
        self.idle_timeout_s = idle_timeout_s
        self.frame_timeout_s = frame_timeout_s
        self._header = bytearray(HEADER.size)
        self._header_view = memoryview(self._header)
        self._tag = bytearray(TAG_BYTES)
        self._buffer = bytearray()
        self._targets: dict[tuple, tuple[memoryview, torch.Tensor]] = {}

    def release(self) -> None:
        """Drop the payload buffer and give its bytes back to the budget."""
        if self.budget is not None:
            self.budget.release(len(self._buffer))
        self._buffer = bytearray()
        self._targets.clear()

    def _grow(self, old: bytearray, size: int, keep: int) -> bytearray:
        """A ``size``-byte buffer holding the first ``keep`` bytes of ``old``; with a budget it
        is charged before it is allocated, and ``old`` (the reused buffer) given back after."""
        if self.budget is not None:
            self.budget.charge(size)
        grown = bytearray(size)
        memoryview(grown)[:keep] = memoryview(old)[:keep]
        if self.reuse_payload:
            if self.budget is not None:
                self.budget.release(len(self._buffer))
            self._buffer = grown
            self._targets.clear()  # their tensors point at the old buffer
        return grown

    def _receive_growing(self, payload_len: int, mac: Any,
                         deadline: float | None) -> bytearray:
        """``payload_len`` bytes in a buffer that is at most twice what has arrived."""
        buffer = self._buffer if self.reuse_payload else bytearray()
        if len(buffer) < min(payload_len, INITIAL_PAYLOAD_BYTES):
            buffer = self._grow(buffer, min(payload_len, INITIAL_PAYLOAD_BYTES), 0)
        received = 0
        while True:
            end = min(len(buffer), payload_len)
            recv_exact_into(self.sock, memoryview(buffer)[received:end], mac, deadline)
            received = end
            if received == payload_len:
                return buffer
            buffer = self._grow(buffer, min(payload_len, 2 * len(buffer)), received)

    def _receive_tensor(self, dtype: DType, shape: tuple[int, ...], payload_len: int,
                        mac: Any, deadline: float | None) -> torch.Tensor:
        key = (dtype, shape)
        target = self._targets.get(key) if self.reuse_payload else None
        if target is not None:
            recv_exact_into(self.sock, target[0], mac, deadline)
            return target[1]
        buffer = self._receive_growing(payload_len, mac, deadline)
        tensor = _tensor_over(buffer, dtype, shape, payload_len // _dtype_tables()[2][dtype])
        if self.reuse_payload:
            if len(self._targets) >= self.MAX_CACHED_SHAPES:
                self._targets.clear()
            self._targets[key] = (memoryview(buffer)[:payload_len], tensor)
        return tensor

    def _frame_start(self, deadline: float | None) -> tuple[int, float | None]:
        """Wait for the frame's first bytes (one receive, up to a whole header); returns how
        many arrived and the deadline for the rest of the frame."""
        try:
            if deadline is None and self.idle_timeout_s is not None:
                self.sock.settimeout(self.idle_timeout_s)
            else:
                _time_left(self.sock, deadline)
            count = self.sock.recv_into(self._header_view)
        except TimeoutError:
            raise IdleTimeout("no frame arrived in time") from None
        if count == 0:
            raise ConnectionClosed(f"peer closed after 0 of {HEADER.size} bytes")
        if self.frame_timeout_s is None:
            return count, deadline
        frame_deadline = time.monotonic() + self.frame_timeout_s
        return count, frame_deadline if deadline is None else min(deadline, frame_deadline)

    def read(self, deadline: float | None = None) -> Frame:
        """One frame; raises ProtocolError for a malformed or refused one, IntegrityError for
        a wrong tag, ConnectionClosed on EOF, TimeoutError past ``deadline`` or the frame
        deadline (IdleTimeout when no byte of it came)."""
        arrived, deadline = self._frame_start(deadline)
        recv_exact_into(self.sock, self._header_view[arrived:], deadline=deadline)
        header = decode_header(self._header, self.max_frame_bytes)
        if header.tagged and self.untagged_channel:
            raise ProtocolError(f"tagged {header.msg_type.name} on a channel agreed untagged")
        if self.admit is not None:
            self.admit(header)
        mac = None
        if self.mac is not None:
            if not header.tagged:
                raise IntegrityError(f"untagged {header.msg_type.name} on an authenticated "
                                     f"connection")
            mac = self.mac.start()
            mac.update(self._header)
        frame = Frame(header.msg_type, header.request_id, header.model_id, header.cut,
                      header.elapsed_s)
        if header.dtype == DType.NONE:
            payload = bytearray(header.payload_len)  # at most MAX_CONTROL_BYTES
            recv_exact_into(self.sock, memoryview(payload), mac, deadline)
            frame.payload = bytes(payload)
        elif header.payload_len == 0:
            frame.tensor = _tensor_over(None, header.dtype, header.shape, 0)
        else:
            frame.tensor = self._receive_tensor(header.dtype, header.shape, header.payload_len,
                                                mac, deadline)
        if header.tagged:
            recv_exact_into(self.sock, memoryview(self._tag), deadline=deadline)
            if mac is None:
                frame.header, frame.tag = bytes(self._header), bytes(self._tag)
            elif not hmac.compare_digest(FrameMac.finish(mac), self._tag):
                raise IntegrityError(f"{header.msg_type.name} tag does not match (tampered, "
                                     f"replayed, reordered or foreign frame)")
        return frame


def read_frame(sock: socket.socket, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
               deadline: float | None = None) -> Frame:
    """Read one frame into fresh buffers (see ``FrameReader`` for a connection's loop)."""
    return FrameReader(sock, max_frame_bytes).read(deadline)


def _send_tls(sock: ssl.SSLSocket, buffer: bytes | memoryview, deadline: float) -> None:
    view = memoryview(buffer).cast("B")
    sent = 0
    while sent < len(view):
        _time_left(sock, deadline)
        sent += sock.send(view[sent:sent + TLS_SEND_BYTES])


def send_buffers(sock: socket.socket, buffers: list[bytes | memoryview],
                 deadline: float | None = None) -> int:
    """Send every buffer with one scatter-gather ``sendmsg`` (a blocking socket normally
    takes it all at once), continuing after a partial send. Returns the bytes written.
    A TLS socket has no ``sendmsg``: its buffers go one ``sendall`` each. With ``deadline``
    (``time.monotonic()``) the whole send raises TimeoutError once it has passed."""
    total = sum(map(len, buffers))
    if isinstance(sock, ssl.SSLSocket):
        for buffer in buffers:
            if deadline is None:
                sock.sendall(buffer)
            else:
                _send_tls(sock, buffer, deadline)
        return total
    _time_left(sock, deadline)
    sent = sock.sendmsg(buffers)
    if sent == total:
        return total
    pending = [memoryview(b).cast("B") for b in buffers if len(b)]
    while True:
        while sent:
            if sent >= len(pending[0]):
                sent -= len(pending[0])
                pending.pop(0)
            else:
                pending[0] = pending[0][sent:]
                sent = 0
        if not pending:
            return total
        _time_left(sock, deadline)
        sent = sock.sendmsg(pending)


def send_tagged(sock: socket.socket, buffers: list[bytes | memoryview],
                mac: FrameMac | None, deadline: float | None = None) -> int:
    """Send an encoded frame and, with ``mac``, its tag (the header must carry TAGGED). A
    small frame leaves with its tag in one ``sendmsg``; a large one leaves first and its tag
    follows, computed while the receiver is already hashing the payload."""
    if mac is None:
        return send_buffers(sock, buffers, deadline)
    if sum(map(len, buffers)) < OVERLAP_TAG_MIN_BYTES:
        return send_buffers(sock, [*buffers, mac.tag(buffers)], deadline)
    sent = send_buffers(sock, buffers, deadline)
    return sent + send_buffers(sock, [mac.tag(buffers)], deadline)


def send_frame(sock: socket.socket, msg_type: MessageType, mac: FrameMac | None = None,
               deadline: float | None = None, **fields: Any) -> int:
    """Send one frame (tagged under ``mac`` when given, by ``deadline`` when given); returns
    the bytes written."""
    return send_tagged(sock, encode_frame(msg_type, tagged=mac is not None, **fields), mac,
                       deadline)


def error_payload(code: ErrorCode, reason: str | None = None) -> dict[str, str]:
    return {"code": code.value, **({"reason": reason} if reason else {})}


def describe_error(frame: Frame) -> str:
    """``code`` or ``code: reason`` of an ERROR frame, each quoted (``peer_text``), for logs
    and exceptions."""
    try:
        body = frame.json()
    except ProtocolError:
        return "unreadable ERROR"
    code, reason = peer_text(body.get("code", "?"), 40), body.get("reason")
    return f"{code}: {peer_text(reason, 300)}" if reason else code


def check_token(token: bytes, source: str = "token") -> None:
    """A shared secret of at least ``MIN_TOKEN_BYTES`` bytes, or ValueError naming ``source``."""
    if len(token) < MIN_TOKEN_BYTES:
        raise ValueError(f"{source}: token has {len(token)} bytes; use at least "
                         f"{MIN_TOKEN_BYTES} (e.g. python -c 'import secrets; "
                         f"print(secrets.token_hex(32))')")


def read_token_file(path: str) -> bytes:
    """The shared secret: the file's content without surrounding whitespace. The file must
    not be readable or writable by group or others, and the token must have at least
    ``MIN_TOKEN_BYTES`` bytes."""
    try:
        with open(path, "rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            token = handle.read().strip()
    except OSError as error:
        raise ValueError(f"token file {path}: {error.strerror}") from error
    if mode & 0o077:
        raise ValueError(f"token file {path}: mode {mode:04o} lets group or others access it; "
                         f"chmod 600 {path}")
    check_token(token, f"token file {path}")
    return token
