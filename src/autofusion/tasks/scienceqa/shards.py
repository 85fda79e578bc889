"""Resumable extraction storage: shards in a work directory, assembled by streaming into one file.

`ShardStore` keeps `<out>/.scienceqa-work/`: `settings.json` (what the shards were computed with) and
`<split>/<index>.safetensors`, each written to a temporary name and renamed, so a shard that exists
is complete. A rerun with the same settings skips finished shards; different settings are refused.

`write_concatenated` writes the safetensors format by hand: header first (sizes are known from the
shard headers), then each tensor's bytes shard by shard. Peak memory is one tensor of one shard,
whatever the dataset size (`safetensors.save_file` would need the whole split in memory).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from autofusion.errors import AutoFusionError

WORK_DIR = ".scienceqa-work"
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}


class ShardStore:
    """Finished shards of one extraction, keyed by split and shard index."""

    def __init__(self, out_dir: Path, settings: Mapping[str, Any]) -> None:
        self.root = Path(out_dir) / WORK_DIR
        self.settings = dict(settings)

    def open(self) -> None:
        """Create the work dir, or check that an existing one was made with the same settings."""
        path = self.root / "settings.json"
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                old = {}
            if old != json.loads(json.dumps(self.settings)):
                changed = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
                raise AutoFusionError(
                    f"{self.root} holds shards extracted with other settings (differing: {changed}). Fix: rerun "
                    f"with the same options to resume, or delete {self.root} to start over."
                )
            return
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(path, json.dumps(self.settings, indent=2, sort_keys=True) + "\n")

    def path(self, split: str, index: int) -> Path:
        return self.root / split / f"{index:05d}.safetensors"

    def done(self, split: str, index: int) -> bool:
        return self.path(split, index).is_file()

    def save(self, split: str, index: int, tensors: Mapping[str, torch.Tensor]) -> None:
        path = self.path(split, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, path)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def _shard_headers(shards: Sequence[Path]) -> dict[str, tuple[str, list[int], int]]:
    """key -> (dtype name, per-sample shape, total samples), checked consistent across shards."""
    out: dict[str, tuple[str, list[int], int]] = {}
    for i, shard in enumerate(shards):
        with safe_open(str(shard), framework="pt") as f:
            keys = set(f.keys())
            if i and keys != set(out):
                raise AutoFusionError(f"{shard}: holds tensors {sorted(keys)}, other shards {sorted(out)}. Fix: delete the work directory {shard.parent.parent} and rerun.")
            for key in keys:
                sl = f.get_slice(key)
                dtype, shape = sl.get_dtype(), list(sl.get_shape())
                if i and (out[key][0], out[key][1]) != (dtype, shape[1:]):
                    raise AutoFusionError(f"{shard}: tensor {key!r} is {dtype} {shape}, other shards {out[key][0]} [N, {out[key][1]}]. Fix: delete the work directory {shard.parent.parent} and rerun.")
                out[key] = (dtype, shape[1:], (out[key][2] if i else 0) + shape[0])
    return out


def write_concatenated(path: Path, shards: Sequence[Path], metadata: Mapping[str, str] | None = None) -> int:
    """Write `path` as the concatenation along dim 0 of the shards' tensors; return the sample count."""
    if not shards:
        raise ValueError("write_concatenated needs at least one shard")
    headers = _shard_headers(shards)
    # Largest element size first: with an 8-byte-padded header every tensor then starts aligned.
    order = sorted(headers, key=lambda k: (-_DTYPES[headers[k][0]].itemsize, k))
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for key in order:
        dtype, shape, n = headers[key]
        nbytes = n * _DTYPES[dtype].itemsize * _prod(shape)
        header[key] = {"dtype": dtype, "shape": [n, *shape], "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        for key in order:
            for shard in shards:
                with safe_open(str(shard), framework="pt") as f:
                    tensor = f.get_tensor(key)
                fh.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)
    os.replace(tmp, path)
    return next(iter(headers.values()))[2]


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out
