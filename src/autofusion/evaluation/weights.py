"""Trained weights over the wire: the child sends its state dict, the trusted parent validates it.

Final training (`evaluation/final.py`) needs the trained model back from the sandboxed child without
ever unpickling anything. After each epoch's test logits, a child asked to export sends one `weight`
frame per state-dict entry (its name, dtype and shape in the JSON header; the data as a flat float32
array, or int64 for integer and bool buffers) and one `weights_end` frame with the count. The parent
checks every name, dtype, shape, size and the count before turning the frames into torch tensors;
anything off is a `WireError`, recorded as a failure of the candidate. This file does not decide
which epoch's weights are kept (the evaluator keeps the best-val epoch) nor where they are saved.
"""

from __future__ import annotations

import math
import re
import socket
from typing import Callable

import numpy as np
import torch

from autofusion.sandbox import wire

# Taken at import, in the zygote, before candidate code exists (as in trainer.py): a candidate that
# overrides `state_dict` cannot change what is exported.
_STATE_DICT = torch.nn.Module.state_dict

FLOAT_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
                "bfloat16": torch.bfloat16}
INT_DTYPES = {"int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8,
              "uint8": torch.uint8, "bool": torch.bool}
NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,300}$")
MAX_TENSORS = 10_000
MAX_RANK = 8


def send_state_dict(sock: socket.socket, model: torch.nn.Module, epoch: int) -> None:
    """Child side: every state-dict tensor as one frame, then `weights_end`."""
    send_tensors(sock, _STATE_DICT(model), epoch)


def send_tensors(sock: socket.socket, tensors: dict[str, torch.Tensor], epoch: int) -> None:
    """Named tensors as `weight` frames, then `weights_end` (the format `recv_state_dict` reads)."""
    for name, tensor in tensors.items():
        t = tensor.detach().cpu()
        dtype = str(t.dtype).removeprefix("torch.")
        data = t.reshape(-1).to(torch.float32 if t.is_floating_point() else torch.int64).numpy()
        wire.send(sock, {"type": "weight", "epoch": epoch, "name": name, "dtype": dtype, "shape": list(t.shape)},
                  np.ascontiguousarray(data))
    wire.send(sock, {"type": "weights_end", "epoch": epoch, "n": len(tensors)})


def recv_state_dict(recv: Callable[[int], wire.Frame], epoch: int, max_bytes: int) -> dict[str, torch.Tensor]:
    """Parent side: read and validate one epoch's state dict. `recv(limit)` returns the next frame,
    refusing an array of more than `limit` bytes before reading it: the budget left, so that the
    whole state dict (at its declared dtypes) costs the reader at most `max_bytes`."""
    out: dict[str, torch.Tensor] = {}
    total = 0
    while True:
        frame = recv(max(0, max_bytes - total) // 2)  # float32 on the wire may be float64 declared
        if frame.header.get("epoch") != epoch:
            raise wire.WireError(f"weights for epoch {frame.header.get('epoch')!r} where epoch {epoch} was expected")
        if frame.type == "weights_end":
            if frame.header.get("n") != len(out):
                raise wire.WireError(f"weights_end announces {frame.header.get('n')!r} tensors, {len(out)} were sent")
            return out
        if frame.type != "weight":
            raise wire.WireError(f"expected a 'weight' frame, got {frame.type!r}")
        name, tensor = _tensor(frame)
        if name in out:
            raise wire.WireError(f"weight {name!r} sent twice")
        total += tensor.numel() * tensor.element_size() + (frame.array.nbytes if frame.array is not None else 0)
        if len(out) >= MAX_TENSORS or total > max_bytes:
            raise wire.WireError(f"the state dict exceeds {MAX_TENSORS} tensors or {max_bytes} bytes")
        out[name] = tensor


def _tensor(frame: wire.Frame) -> tuple[str, torch.Tensor]:
    name, dtype, shape = frame.header.get("name"), frame.header.get("dtype"), frame.header.get("shape")
    if not isinstance(name, str) or not NAME.match(name):
        raise wire.WireError(f"bad weight name {name!r}")
    if dtype not in FLOAT_DTYPES and dtype not in INT_DTYPES:
        raise wire.WireError(f"weight {name!r}: dtype {dtype!r} is not allowed")
    if (not isinstance(shape, list) or len(shape) > MAX_RANK
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape)):
        raise wire.WireError(f"weight {name!r}: bad shape {shape!r}")
    array = frame.array
    expected = np.float32 if dtype in FLOAT_DTYPES else np.int64
    if array is None or array.ndim != 1 or array.dtype != expected or array.size != math.prod(shape):
        raise wire.WireError(f"weight {name!r}: data does not match dtype {dtype} and shape {shape}")
    if dtype in FLOAT_DTYPES and not np.isfinite(array).all():
        raise wire.WireError(f"weight {name!r} holds NaN or inf")
    if dtype == "bool" and not np.isin(array, (0, 1)).all():
        raise wire.WireError(f"weight {name!r}: bool buffer holds values other than 0 and 1")
    target = FLOAT_DTYPES.get(dtype) or INT_DTYPES[dtype]
    return name, torch.from_numpy(array).to(target).reshape(shape)
