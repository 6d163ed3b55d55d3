"""Framed binary wire protocol between the device runtime and the offloading server.

Every message is one frame: a fixed 70-byte big-endian header, then ``payload_len`` bytes.

    offset size field
    0      4    magic         b"PSDB"
    4      1    version       1
    5      1    msg_type      MessageType
    6      2    flags         reserved, 0
    8      2    model_id      index into the model list agreed in the handshake
    10     2    cut           cut index (INFER): the tensor crossed cut ``cut``
    12     8    request_id    echoed in the RESULT / ERROR for that request
    20     8    elapsed_s     float64; server compute seconds in a RESULT, else 0
    28     1    dtype         DType code; NONE for JSON control payloads
    29     1    ndim          0..8
    30     32   shape         8 x uint32, unused dims 0
    62     8    payload_len   bytes that follow

Tensor payloads are the raw C-order bytes of the tensor (little-endian, as torch stores
them on every supported platform), sent from the tensor's own memory in one ``sendmsg`` with
the header; the receiver (``FrameReader``) checks ``payload_len == numel * itemsize`` before
reading and ``recv_into``s the payload straight into the memory of a tensor built with
``torch.frombuffer``: nothing received is ever unpickled.
Control payloads (CHALLENGE, AUTH, WELCOME, ERROR) are small UTF-8 JSON objects.

Handshake: the server sends CHALLENGE ``{"protocol": 1, "nonce": hex, "models": {name:
weights_sha256}}``; the client answers AUTH ``{"mac": HMAC-SHA256(token, b"pipesched-auth|" +
nonce), "models": {name: weights_sha256}}``; the server answers WELCOME ``{"models": [names in
the client's order], "device": "cpu"|"cuda:0"}`` (model_id = position in that list) or ERROR
and closes. Afterwards the client sends INFER frames and PROBE frames (payload discarded,
answered by a PROBE_ACK) in any order; the server answers each INFER with a RESULT.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import torch

MAGIC = b"PSDB"
VERSION = 1
MAX_NDIM = 8
HEADER = struct.Struct("!4sBBHHHQdBB8IQ")
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
MAX_CONTROL_BYTES = 64 * 1024
AUTH_CONTEXT = b"pipesched-auth|"


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


TORCH_DTYPES: dict[DType, torch.dtype] = {
    DType.FLOAT32: torch.float32, DType.FLOAT16: torch.float16, DType.BFLOAT16: torch.bfloat16,
    DType.FLOAT64: torch.float64, DType.INT64: torch.int64, DType.INT32: torch.int32,
    DType.INT16: torch.int16, DType.INT8: torch.int8, DType.UINT8: torch.uint8,
    DType.BOOL: torch.bool,
}
DTYPE_CODES = {v: k for k, v in TORCH_DTYPES.items()}
ITEMSIZE = {code: torch.empty((), dtype=dtype).element_size()
            for code, dtype in TORCH_DTYPES.items()}
# dtypes ``Tensor.numpy()`` exposes directly (bfloat16 goes through a uint8 view)
NUMPY_CODES = {np.dtype(torch.empty((), dtype=dtype).numpy().dtype): code
               for code, dtype in TORCH_DTYPES.items() if dtype != torch.bfloat16}
MESSAGE_TYPES = {int(member): member for member in MessageType}
DTYPES = {int(member): member for member in DType}
_ZEROS = (0,) * MAX_NDIM


class ProtocolError(ValueError):
    """A frame that breaks the protocol; the connection that sent it must be closed."""


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

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ProtocolError(f"{self.msg_type.name} payload is not JSON: {error}") from error
        if not isinstance(value, dict):
            raise ProtocolError(f"{self.msg_type.name} payload must be a JSON object")
        return value


def _wire_array(tensor: torch.Tensor) -> np.ndarray | None:
    """A C-contiguous numpy array sharing the tensor's memory (one torch call), or None when
    the tensor needs the general path (another device, autograd, bfloat16, strided)."""
    try:
        array = tensor.numpy()
    except (RuntimeError, TypeError):
        return None
    return array if array.flags.c_contiguous else None


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's raw bytes, without a copy when it is already contiguous on the CPU."""
    array = _wire_array(tensor)
    if array is None:
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        array = flat.view(torch.uint8).numpy() if flat.numel() else np.empty(0, np.uint8)
    return memoryview(array).cast("B")


def encode_frame(msg_type: MessageType, *, request_id: int = 0, model_id: int = 0, cut: int = 0,
                 elapsed_s: float = 0.0, tensor: torch.Tensor | None = None,
                 control: dict[str, Any] | None = None) -> list[bytes | memoryview]:
    """Header and payload as two buffers, sent together by one ``sendmsg``; the payload is a
    view of the tensor's own memory (no copy for a contiguous CPU tensor)."""
    if tensor is not None:
        array = _wire_array(tensor)
        if array is not None:  # the common case, read off the numpy view
            dtype, shape = NUMPY_CODES.get(array.dtype), array.shape
        else:
            dtype, shape = DTYPE_CODES.get(tensor.dtype), tuple(tensor.shape)
        if dtype is None:
            raise ValueError(f"unsupported tensor dtype {tensor.dtype}")
        ndim = len(shape)
        if ndim > MAX_NDIM:
            raise ValueError(f"tensor has {ndim} dims; at most {MAX_NDIM}")
        payload = memoryview(array).cast("B") if array is not None else tensor_bytes(tensor)
        shape = (*shape, *_ZEROS[ndim:])
    else:
        payload = json.dumps(control).encode() if control is not None else b""
        dtype, ndim, shape = DType.NONE, 0, _ZEROS
    header = HEADER.pack(MAGIC, VERSION, msg_type, 0, model_id, cut, request_id,
                         elapsed_s, dtype, ndim, *shape, len(payload))
    return [header, payload]


def recv_exact_into(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` (a writable byte view) from ``sock`` or raise ConnectionClosed."""
    size = len(view)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:], size - received)
        if count == 0:
            raise ConnectionClosed(f"peer closed after {received} of {size} bytes")
        received += count


def recv_exact(sock: socket.socket, size: int) -> bytearray:
    """Read exactly ``size`` bytes into a new buffer or raise ConnectionClosed."""
    buffer = bytearray(size)
    recv_exact_into(sock, memoryview(buffer))
    return buffer


def decode_header(header: bytes | bytearray | memoryview, max_frame_bytes: int) -> tuple:
    (magic, version, type_code, _flags, model_id, cut, request_id, elapsed_s, dtype_code, ndim,
     *rest) = HEADER.unpack_from(header)
    shape, payload_len = rest[:MAX_NDIM], rest[MAX_NDIM]
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}")
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version}")
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
        itemsize = ITEMSIZE[dtype]
        if numel * itemsize != payload_len:
            raise ProtocolError(
                f"payload length {payload_len} != {numel} x {itemsize} bytes for shape "
                f"{tuple(shape[:ndim])}")
        if any(shape[ndim:]):
            raise ProtocolError("non-zero shape entries beyond ndim")
    return msg_type, request_id, model_id, cut, elapsed_s, dtype, tuple(shape[:ndim]), payload_len


class FrameReader:
    """Reads the frames of one socket; the payload lands in its tensor's memory.

    The header is read into a fixed 70-byte buffer and fully validated before any payload
    byte is read. The tensor is then built over a buffer of exactly ``payload_len`` bytes
    (``torch.frombuffer``, no copy) *before* the payload arrives, and ``recv_into`` fills
    it: the per-frame work overlaps the transfer instead of following it.

    With ``reuse_payload`` one buffer, grown up to ``max_frame_bytes``, serves every frame,
    and the tensor over it is kept per (dtype, shape), so a shape seen before costs no
    allocation and no tensor construction. A returned tensor is then only valid until the
    next ``read``: for a consumer that is done with a frame before reading the next (the
    server). Without it each payload gets its own buffer and its tensor may be kept.
    """

    MAX_CACHED_SHAPES = 256

    def __init__(self, sock: socket.socket, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 reuse_payload: bool = False):
        self.sock = sock
        self.max_frame_bytes = max_frame_bytes
        self.reuse_payload = reuse_payload
        self._header = bytearray(HEADER.size)
        self._header_view = memoryview(self._header)
        self._buffer = bytearray()
        self._targets: dict[tuple, tuple[memoryview, torch.Tensor]] = {}

    def _target(self, dtype: DType, shape: tuple[int, ...],
                payload_len: int) -> tuple[memoryview, torch.Tensor]:
        """The byte view to receive into and the tensor over the same memory."""
        key = (dtype, shape)
        target = self._targets.get(key) if self.reuse_payload else None
        if target is not None:
            return target
        if not self.reuse_payload:
            buffer = bytearray(payload_len)
        else:
            if len(self._buffer) < payload_len:
                self._buffer = bytearray(payload_len)
                self._targets.clear()  # their tensors point at the old buffer
            elif len(self._targets) >= self.MAX_CACHED_SHAPES:
                self._targets.clear()
            buffer = self._buffer
        tensor = torch.frombuffer(buffer, dtype=TORCH_DTYPES[dtype],
                                  count=payload_len // ITEMSIZE[dtype]).view(shape)
        target = (memoryview(buffer)[:payload_len], tensor)
        if self.reuse_payload:
            self._targets[key] = target
        return target

    def read(self) -> Frame:
        """One frame; raises ProtocolError for a malformed one, ConnectionClosed on EOF."""
        recv_exact_into(self.sock, self._header_view)
        msg_type, request_id, model_id, cut, elapsed_s, dtype, shape, payload_len = \
            decode_header(self._header, self.max_frame_bytes)
        frame = Frame(msg_type, request_id, model_id, cut, elapsed_s)
        if dtype == DType.NONE:
            frame.payload = bytes(recv_exact(self.sock, payload_len))
        elif payload_len == 0:
            frame.tensor = torch.empty(shape, dtype=TORCH_DTYPES[dtype])
        else:
            view, frame.tensor = self._target(dtype, shape, payload_len)
            recv_exact_into(self.sock, view)
        return frame


def read_frame(sock: socket.socket, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Frame:
    """Read one frame into fresh buffers (see ``FrameReader`` for a connection's loop)."""
    return FrameReader(sock, max_frame_bytes).read()


def send_buffers(sock: socket.socket, buffers: list[bytes | memoryview]) -> int:
    """Send every buffer with one scatter-gather ``sendmsg`` (a blocking socket normally
    takes it all at once), continuing after a partial send. Returns the bytes written."""
    total = sum(map(len, buffers))
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


def send_frame(sock: socket.socket, msg_type: MessageType, **fields: Any) -> int:
    """Send one frame; returns the number of bytes written."""
    return send_buffers(sock, encode_frame(msg_type, **fields))


def auth_mac(token: bytes, nonce: bytes) -> str:
    return hmac.new(token, AUTH_CONTEXT + nonce, hashlib.sha256).hexdigest()


def check_mac(token: bytes, nonce: bytes, mac: object) -> bool:
    return isinstance(mac, str) and hmac.compare_digest(auth_mac(token, nonce), mac)


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
