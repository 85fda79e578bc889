"""The wire format between the trusted parent and the processes that run candidate code.

A frame is: 8-byte magic+version, 4-byte header length, a UTF-8 JSON header, then the raw bytes of at
most one array whose dtype and shape the header declares. Nothing is ever unpickled. The reader
checks every bound before allocating: header size, dtype allow-list, rank, element count, total bytes,
and (when the caller says what it expects) the exact shape. A malformed frame raises `WireError`,
which the parent records as a candidate failure.
"""

from __future__ import annotations

import json
import math
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

MAGIC = b"AFWIRE01"
MAX_HEADER_BYTES = 64 * 1024
DTYPES = {"float32": np.float32, "int64": np.int64, "uint8": np.uint8}  # uint8: serialised graphs
_LEN = struct.Struct("!I")


class WireError(Exception):
    """A frame that is malformed, oversized or not what was expected."""


class WireTimeout(WireError):
    """The peer did not send a complete frame before the deadline."""


class WireClosed(WireError):
    """The peer closed the connection (it exited or was killed)."""


@dataclass(frozen=True)
class Frame:
    header: dict[str, Any]
    array: np.ndarray | None = None

    @property
    def type(self) -> str:
        return str(self.header.get("type", ""))


def send(sock: socket.socket, header: dict[str, Any], array: np.ndarray | None = None) -> None:
    """Write one frame; the array (if any) must be a float32, int64 or uint8 numpy array."""
    header = dict(header)
    payload = b""
    if array is not None:
        array = np.ascontiguousarray(array)
        name = next((k for k, v in DTYPES.items() if array.dtype == v), None)
        if name is None:
            raise WireError(f"cannot send dtype {array.dtype}; allowed: {sorted(DTYPES)}")
        header["array"] = {"dtype": name, "shape": list(array.shape)}
        payload = array.tobytes()
    raw = json.dumps(header, allow_nan=False).encode()
    if len(raw) > MAX_HEADER_BYTES:
        raise WireError(f"header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")
    sock.sendall(MAGIC + _LEN.pack(len(raw)) + raw + payload)


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytearray:
    """Exactly `n` bytes, read straight into one buffer (no chunk list, no join: a frame costs the
    reader its own size once)."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise WireTimeout("deadline passed while waiting for the peer")
            ready, _, _ = select.select([sock], [], [], wait)
            if not ready:
                raise WireTimeout("deadline passed while waiting for the peer")
        k = sock.recv_into(view[got:], min(n - got, 1 << 20))
        if not k:
            raise WireClosed("peer closed the connection")
        got += k
    return buf


def recv(
    sock: socket.socket,
    deadline: float | None = None,
    max_array_bytes: int = 256 * 1024 * 1024,
    expect_shape: tuple[int, ...] | None = None,
) -> Frame:
    """Read one frame, validating it before any large allocation."""
    head = _recv_exact(sock, len(MAGIC) + _LEN.size, deadline)
    if bytes(head[: len(MAGIC)]) != MAGIC:
        raise WireError("bad frame magic (the peer wrote something that is not a wire frame)")
    (size,) = _LEN.unpack(head[len(MAGIC):])
    if size > MAX_HEADER_BYTES:
        raise WireError(f"header of {size} bytes exceeds {MAX_HEADER_BYTES}")
    raw = _recv_exact(sock, size, deadline)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # also: nesting too deep, an integer too long to parse
        raise WireError(f"header is not acceptable JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(header, dict):
        raise WireError("header is not a JSON object")
    spec = header.pop("array", None)
    if spec is None:
        return Frame(header)
    array = _recv_array(sock, spec, deadline, max_array_bytes, expect_shape)
    return Frame(header, array)


def _recv_array(sock: socket.socket, spec: Any, deadline: float | None, max_bytes: int,
                expect_shape: tuple[int, ...] | None) -> np.ndarray:
    if not isinstance(spec, dict) or spec.get("dtype") not in DTYPES or not isinstance(spec.get("shape"), list):
        raise WireError(f"bad array spec {spec!r}")
    shape = spec["shape"]
    if len(shape) > 4 or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape):
        raise WireError(f"bad array shape {shape!r}")
    if expect_shape is not None and tuple(shape) != tuple(expect_shape):
        raise WireError(f"array has shape {shape}, expected {list(expect_shape)}")
    dtype = np.dtype(DTYPES[spec["dtype"]])
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise WireError(f"array of {nbytes} bytes exceeds the limit of {max_bytes}")
    data = _recv_exact(sock, nbytes, deadline)
    return np.frombuffer(data, dtype=dtype).reshape(shape)  # owns its (writable) buffer
