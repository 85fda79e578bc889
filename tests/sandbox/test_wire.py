"""The wire format refuses every malformed frame with WireError, before allocating anything large."""

from __future__ import annotations

import json
import socket
import struct

import numpy as np
import pytest

from autofusion.sandbox import wire


def _raw(header: bytes, payload: bytes = b"") -> bytes:
    return wire.MAGIC + struct.pack("!I", len(header)) + header + payload


def _recv(raw: bytes, **kwargs) -> wire.Frame:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(raw)
        a.shutdown(socket.SHUT_WR)
        return wire.recv(b, deadline=None, **kwargs)


def test_a_frame_round_trips() -> None:
    a, b = socket.socketpair()
    with a, b:
        wire.send(a, {"type": "epoch", "epoch": 1}, np.arange(6, dtype=np.float32).reshape(2, 3))
        frame = wire.recv(b, expect_shape=(2, 3))
    assert frame.type == "epoch" and frame.array is not None and frame.array.tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("raw, problem", [
    (_raw(b"[" * 30_000 + b"]" * 30_000), "RecursionError"),  # a header nested too deep for json
    (_raw(b'{"type": "x", "n": ' + b"9" * 5000 + b"}"), "ValueError"),  # an integer too long to parse
    (_raw(b"\xff\xfe"), "not acceptable JSON"),
    (_raw(b"[1, 2]"), "not a JSON object"),
    (b"NOTWIRE0" + b"\0" * 4, "bad frame magic"),
    (_raw(json.dumps({"type": "x", "array": {"dtype": "object", "shape": [1]}}).encode()), "bad array spec"),
    (_raw(json.dumps({"type": "x", "array": {"dtype": "float32", "shape": [1 << 20]}}).encode()), "exceeds the limit"),
])
def test_malformed_frames_raise_wire_error(raw: bytes, problem: str) -> None:
    with pytest.raises(wire.WireError, match=problem):
        _recv(raw, max_array_bytes=1 << 10)


def test_a_frame_that_should_carry_no_array_cannot_make_the_reader_allocate() -> None:
    header = json.dumps({"type": "smoke_ok", "array": {"dtype": "float32", "shape": [67_108_863]}}).encode()
    with pytest.raises(wire.WireError, match="exceeds the limit of 0"):
        _recv(_raw(header), max_array_bytes=0)  # nothing of the 256 MB was read
