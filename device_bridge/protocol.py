"""Framed binary wire protocol between the device runtime and the offloading server.

Every message is one frame: a fixed 70-byte big-endian header, then ``payload_len`` bytes,
then (when flag ``TAGGED`` is set) a 16-byte tag.

    offset size field
    0      4    magic         b"PSDB"
    4      1    version       2
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

1. server -> CHALLENGE ``{"protocol": 2, "nonce": hex(32 random bytes) Ns, "models":
   {name: weights_sha256}}`` (untagged);
2. client -> AUTH ``{"nonce": hex Nc, "models": {name: weights_sha256}}``, tagged under the
   client-to-server key;
3. server -> WELCOME ``{"models": [names in the client's order], "device": ...,
   "whole_model_s": {...}}``, tagged under the server-to-client key (model_id = position in
   that list), or an untagged ERROR ``{"code": ...}`` and close.

The keys are ``HMAC-SHA256(token, label | Ns | Nc | SHA-256(CHALLENGE payload))`` with one
label per direction, so a valid AUTH tag proves the client knows the token and saw this
challenge, and a valid WELCOME tag proves the same of the server. Every frame from AUTH on
carries ``tag = HMAC-SHA256(direction key, seq || header || payload)[:16]``, where ``seq`` is
the frame's implicit 64-bit position in its direction (0 for AUTH and WELCOME): a flipped bit,
a replayed, reordered or dropped frame, or a frame of another session fails the tag and
closes the connection. Afterwards the client sends INFER and PROBE frames (payload discarded,
answered by a PROBE_ACK) in any order; the server answers each INFER with a RESULT.

ERROR payloads carry a fixed ``code`` (``ErrorCode``); a ``reason`` text is added only for
a peer that has proven the token, and never holds internal exception text.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

MAGIC = b"PSDB"
VERSION = 2
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
KEY_LABELS = (b"pipesched-v2 client-to-server|", b"pipesched-v2 server-to-client|")


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
    SERVER_BUSY = "server_busy"              # connection or handshake cap reached
    INTEGRITY = "integrity"                  # a frame failed its tag after the handshake
    IDLE_TIMEOUT = "idle_timeout"            # authenticated, then silent too long
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


class ConnectionClosed(ConnectionError):
    """The peer closed the connection (possibly in the middle of a frame)."""


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
        try:
            value = json.loads(self.payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise ProtocolError(f"{self.msg_type.name} payload is not JSON: "
                                f"{type(error).__name__}") from error
        if not isinstance(value, dict):
            raise ProtocolError(f"{self.msg_type.name} payload must be a JSON object")
        return value


class FrameMac:
    """One direction of a session: ``HMAC-SHA256(key, seq || header || payload)[:16]`` with
    ``seq`` counting that direction's frames from 0 (never sent: both ends count).

    HMAC-SHA256 is the fastest keyed MAC the standard library offers where the CPU has SHA
    instructions (OpenSSL; about 0.6 ms per MiB here, against 1.2 for keyed BLAKE2b and
    1.3 for HMAC-SHA512; see docs/device_bridge.md)."""

    def __init__(self, key: bytes):
        self._keyed = hmac.new(key, digestmod="sha256")
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


def recv_exact_into(sock: socket.socket, view: memoryview, mac: Any = None,
                    deadline: float | None = None) -> None:
    """Fill ``view`` (a writable byte view) from ``sock`` or raise ConnectionClosed; each
    received piece also feeds ``mac``. With ``deadline`` (``time.monotonic()``) the whole
    read, however the bytes trickle in, raises TimeoutError once it has passed."""
    size = len(view)
    received = 0
    while received < size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("deadline passed")
            sock.settimeout(remaining)
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


def decode_header(header: bytes | bytearray | memoryview, max_frame_bytes: int) -> tuple:
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
        numel = 1
        for s in shape[:ndim]:
            numel *= s
        itemsize = _dtype_tables()[2][dtype]
        if numel * itemsize != payload_len:
            raise ProtocolError(
                f"payload length {payload_len} != {numel} x {itemsize} bytes for shape "
                f"{tuple(shape[:ndim])}")
        if any(shape[ndim:]):
            raise ProtocolError("non-zero shape entries beyond ndim")
    return (msg_type, request_id, model_id, cut, elapsed_s, dtype, tuple(shape[:ndim]),
            payload_len, bool(flags & FLAG_TAGGED))


class FrameReader:
    """Reads the frames of one socket; the payload lands in its tensor's memory.

    The header is read into a fixed 70-byte buffer and fully validated before any payload
    byte is read. The payload is received into a buffer that starts at
    ``INITIAL_PAYLOAD_BYTES`` and doubles as bytes arrive, so memory follows what the peer
    really sent, not what its header claims; the tensor is built over it with
    ``torch.frombuffer`` (no copy).

    With ``mac`` (the connection's receiving ``FrameMac``) every frame must be tagged: the
    MAC is fed as each piece arrives and the tag is checked once the payload is in
    (``IntegrityError`` otherwise; the frame is never returned). Without it, a tagged
    frame's header and tag are kept on the Frame for a later ``FrameMac.check``.

    With ``reuse_payload`` one buffer serves every frame, and the tensor over it is kept per
    (dtype, shape), so a shape seen before costs no allocation and no tensor construction. A
    returned tensor is then only valid until the next ``read``: for a consumer that is done
    with a frame before reading the next (the server). Without it each payload gets its own
    buffer and its tensor may be kept.
    """

    MAX_CACHED_SHAPES = 256

    def __init__(self, sock: socket.socket, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 reuse_payload: bool = False, mac: FrameMac | None = None):
        self.sock = sock
        self.max_frame_bytes = max_frame_bytes
        self.reuse_payload = reuse_payload
        self.mac = mac
        self._header = bytearray(HEADER.size)
        self._header_view = memoryview(self._header)
        self._tag = bytearray(TAG_BYTES)
        self._buffer = bytearray()
        self._targets: dict[tuple, tuple[memoryview, torch.Tensor]] = {}

    def _receive_growing(self, payload_len: int, mac: Any,
                         deadline: float | None) -> bytearray:
        """``payload_len`` bytes in a buffer that is at most twice what has arrived."""
        buffer = self._buffer if self.reuse_payload else bytearray()
        if len(buffer) < min(payload_len, INITIAL_PAYLOAD_BYTES):
            buffer = bytearray(min(payload_len, INITIAL_PAYLOAD_BYTES))
        received = 0
        while True:
            end = min(len(buffer), payload_len)
            recv_exact_into(self.sock, memoryview(buffer)[received:end], mac, deadline)
            received = end
            if received == payload_len:
                break
            grown = bytearray(min(payload_len, 2 * len(buffer)))
            memoryview(grown)[:received] = memoryview(buffer)[:received]
            buffer = grown
        if self.reuse_payload and buffer is not self._buffer:
            self._buffer = buffer
            self._targets.clear()  # their tensors point at the old buffer
        return buffer

    def _receive_tensor(self, dtype: DType, shape: tuple[int, ...], payload_len: int,
                        mac: Any, deadline: float | None) -> torch.Tensor:
        key = (dtype, shape)
        target = self._targets.get(key) if self.reuse_payload else None
        if target is not None:
            recv_exact_into(self.sock, target[0], mac, deadline)
            return target[1]
        import torch

        torch_dtypes, _, itemsize, _ = _dtype_tables()
        buffer = self._receive_growing(payload_len, mac, deadline)
        tensor = torch.frombuffer(buffer, dtype=torch_dtypes[dtype],
                                  count=payload_len // itemsize[dtype]).view(shape)
        if self.reuse_payload:
            if len(self._targets) >= self.MAX_CACHED_SHAPES:
                self._targets.clear()
            self._targets[key] = (memoryview(buffer)[:payload_len], tensor)
        return tensor

    def read(self, deadline: float | None = None) -> Frame:
        """One frame; raises ProtocolError for a malformed one, IntegrityError for a wrong
        tag, ConnectionClosed on EOF, TimeoutError past ``deadline``."""
        recv_exact_into(self.sock, self._header_view, deadline=deadline)
        msg_type, request_id, model_id, cut, elapsed_s, dtype, shape, payload_len, tagged = \
            decode_header(self._header, self.max_frame_bytes)
        mac = None
        if self.mac is not None:
            if not tagged:
                raise IntegrityError(f"untagged {msg_type.name} on an authenticated connection")
            mac = self.mac.start()
            mac.update(self._header)
        frame = Frame(msg_type, request_id, model_id, cut, elapsed_s)
        if dtype == DType.NONE:
            payload = bytearray(payload_len)  # at most MAX_CONTROL_BYTES
            recv_exact_into(self.sock, memoryview(payload), mac, deadline)
            frame.payload = bytes(payload)
        elif payload_len == 0:
            import torch

            frame.tensor = torch.empty(shape, dtype=_dtype_tables()[0][dtype])
        else:
            frame.tensor = self._receive_tensor(dtype, shape, payload_len, mac, deadline)
        if tagged:
            recv_exact_into(self.sock, memoryview(self._tag), deadline=deadline)
            if mac is None:
                frame.header, frame.tag = bytes(self._header), bytes(self._tag)
            elif not hmac.compare_digest(FrameMac.finish(mac), self._tag):
                raise IntegrityError(f"{msg_type.name} tag does not match (tampered, replayed, "
                                     f"reordered or foreign frame)")
        return frame


def read_frame(sock: socket.socket, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
               deadline: float | None = None) -> Frame:
    """Read one frame into fresh buffers (see ``FrameReader`` for a connection's loop)."""
    return FrameReader(sock, max_frame_bytes).read(deadline)


def send_buffers(sock: socket.socket, buffers: list[bytes | memoryview]) -> int:
    """Send every buffer with one scatter-gather ``sendmsg`` (a blocking socket normally
    takes it all at once), continuing after a partial send. Returns the bytes written.
    A TLS socket has no ``sendmsg``: its buffers go one ``sendall`` each."""
    total = sum(map(len, buffers))
    if isinstance(sock, ssl.SSLSocket):
        for buffer in buffers:
            sock.sendall(buffer)
        return total
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
        sent = sock.sendmsg(pending)


def send_tagged(sock: socket.socket, buffers: list[bytes | memoryview],
                mac: FrameMac | None) -> int:
    """Send an encoded frame and, with ``mac``, its tag (the header must carry TAGGED). A
    small frame leaves with its tag in one ``sendmsg``; a large one leaves first and its tag
    follows, computed while the receiver is already hashing the payload."""
    if mac is None:
        return send_buffers(sock, buffers)
    if sum(map(len, buffers)) < OVERLAP_TAG_MIN_BYTES:
        return send_buffers(sock, [*buffers, mac.tag(buffers)])
    sent = send_buffers(sock, buffers)
    return sent + send_buffers(sock, [mac.tag(buffers)])


def send_frame(sock: socket.socket, msg_type: MessageType, mac: FrameMac | None = None,
               **fields: Any) -> int:
    """Send one frame (tagged under ``mac`` when given); returns the bytes written."""
    return send_tagged(sock, encode_frame(msg_type, tagged=mac is not None, **fields), mac)


def error_payload(code: ErrorCode, reason: str | None = None) -> dict[str, str]:
    return {"code": code.value, **({"reason": reason} if reason else {})}


def describe_error(frame: Frame) -> str:
    """``code`` or ``code: reason`` of an ERROR frame, for logs and exceptions."""
    try:
        body = frame.json()
    except ProtocolError:
        return "unreadable ERROR"
    code, reason = str(body.get("code", "?"))[:40], body.get("reason")
    return f"{code}: {str(reason)[:300]}" if reason else code


def read_token_file(path: str) -> bytes:
    """The shared secret: the file's content without surrounding whitespace (>= 16 bytes)."""
    try:
        with open(path, "rb") as handle:
            token = handle.read().strip()
    except OSError as error:
        raise ValueError(f"token file {path}: {error.strerror}") from error
    if len(token) < 16:
        raise ValueError(f"token file {path}: token has {len(token)} bytes; use at least 16")
    return token
