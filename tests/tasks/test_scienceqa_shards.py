"""Shard storage: streaming concatenation into one safetensors file, and the settings guard for resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from autofusion.errors import AutoFusionError
from autofusion.tasks.scienceqa.shards import ShardStore, write_concatenated


def _shard(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(n, 3, 4, generator=g).half(),
        "text": torch.randn(n, 5, 2, generator=g),
        "text_mask": torch.rand(n, 5, generator=g) > 0.5,
        "label": torch.randint(0, 4, (n,), generator=g),
    }


def test_concatenation_equals_torch_cat_for_every_dtype(tmp_path: Path) -> None:
    shards = [_shard(n, i) for i, n in enumerate((3, 1, 4))]
    paths = []
    for i, tensors in enumerate(shards):
        save_file(tensors, str(tmp_path / f"{i}.safetensors"))
        paths.append(tmp_path / f"{i}.safetensors")
    assert write_concatenated(tmp_path / "all.safetensors", paths, {"note": "x"}) == 8
    got = load_file(str(tmp_path / "all.safetensors"))
    for key in shards[0]:
        assert got[key].dtype == shards[0][key].dtype
        assert torch.equal(got[key], torch.cat([s[key] for s in shards])), key
    with safe_open(str(tmp_path / "all.safetensors"), framework="pt") as f:
        assert f.metadata() == {"note": "x"}
    assert not list(tmp_path.glob("*.partial"))


def test_shards_with_different_tensors_are_refused(tmp_path: Path) -> None:
    a, b = _shard(2, 0), _shard(2, 1)
    b["text"] = torch.randn(2, 6, 2)  # another text length: stale shard from another run
    save_file(a, str(tmp_path / "a.safetensors"))
    save_file(b, str(tmp_path / "b.safetensors"))
    with pytest.raises(AutoFusionError, match=r"tensor 'text' is F32 \[2, 6, 2\].*delete the work directory"):
        write_concatenated(tmp_path / "all.safetensors", [tmp_path / "a.safetensors", tmp_path / "b.safetensors"])


def test_store_keeps_finished_shards_and_guards_its_settings(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, {"encoder": "a", "shard_size": 2})
    store.open()
    assert not store.done("train", 0)
    store.save("train", 0, _shard(2, 0))
    assert store.done("train", 0) and not store.done("train", 1)
    ShardStore(tmp_path, {"encoder": "a", "shard_size": 2}).open()  # same settings: resumes
    with pytest.raises(AutoFusionError, match=r"differing: \['encoder'\]"):
        ShardStore(tmp_path, {"encoder": "b", "shard_size": 2}).open()
    store.remove()
    assert not store.root.exists()
