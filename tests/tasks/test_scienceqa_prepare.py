"""ScienceQA -> feature task end to end with real (tiny) encoders: validity, shapes, masks, resume, errors."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from autofusion.errors import AutoFusionError
from autofusion.tasks.format import load_task, validate_task
from autofusion.tasks.scienceqa import extract_task, prepare_scienceqa, read_scienceqa
from autofusion.tasks.scienceqa.cli import register_cli
from autofusion.tasks.scienceqa.encoders import Encoded, load_image_encoder
from autofusion.tasks.scienceqa.images import ImageLoader
from autofusion.tasks.scienceqa.shards import WORK_DIR

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("scienceqa_one_thread")
N_QUERIES, D_MODEL = 6, 16  # the tiny DETR of conftest.py


class CountingImages:
    """Wraps an image encoder, counting the images it encodes."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.n_tokens, self.dim = inner, inner.name, inner.n_tokens, inner.dim
        self.n_images = 0

    def encode(self, images: Sequence[Any]) -> Encoded:
        self.n_images += len(images)
        return self.inner.encode(images)


class CountingText:
    """Wraps a text encoder, counting forward passes; raises on pass number `crash_at` (a simulated kill)."""

    def __init__(self, inner: Any, crash_at: int | None = None) -> None:
        self.inner, self.name, self.dim, self.max_length = inner, inner.name, inner.dim, inner.max_length
        self.calls, self.crash_at = 0, crash_at

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return self.inner.token_lengths(texts)

    def encode(self, texts: Sequence[str], length: int) -> Encoded:
        self.calls += 1
        if self.crash_at is not None and self.calls >= self.crash_at:
            raise RuntimeError("simulated crash")
        return self.inner.encode(texts, length)


def _tensors(task_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {s: load_file(str(task_dir / f"{s}.safetensors")) for s in ("train", "val", "test")}


def test_official_layout_with_detr_and_t5_gives_a_valid_task(official_dir: Path, tiny_detr_dir: Path, tiny_t5_dir: Path,
                                                             t5_encoder: Any, scienceqa_questions: list[tuple], tmp_path: Path) -> None:
    out = prepare_scienceqa(official_dir, tmp_path / "task", image_encoder=str(tiny_detr_dir), text_encoder=str(tiny_t5_dir),
                            batch_size=2, shard_size=3, device="cpu", progress=False)
    spec = validate_task(out)
    problems = read_scienceqa(official_dir)
    lengths = t5_encoder.token_lengths([p.prompt() for s in problems.values() for p in s])
    assert spec.num_classes == 5  # the most choices of any fixture question
    assert spec.modalities == {"image": (N_QUERIES, D_MODEL), "text": (max(lengths), D_MODEL)}
    task = load_task(out)
    for split, data in task.splits.items():
        want = [q for q in scienceqa_questions if q[1] == split]
        assert data.meta["pid"] == [q[0] for q in want]
        assert data.labels.tolist() == [q[4] for q in want]
        assert data.label_mask.tolist() == [[c < len(q[3]) for c in range(5)] for q in want]
        assert data.meta["has_image"] == [q[6] for q in want]
        assert data.meta["has_context"] == [bool(q[5]) for q in want]
        image, image_mask = data.features["image"], data.masks["image"]
        for i, q in enumerate(want):
            if q[6]:
                assert bool(image_mask[i].all()) and float(image[i].abs().sum()) > 0
            else:  # no image: zeros, only the first token marked real
                assert image_mask[i].tolist() == [True] + [False] * (N_QUERIES - 1) and float(image[i].abs().sum()) == 0
        n_tokens = torch.tensor(t5_encoder.token_lengths([p.prompt() for p in problems[split]]))
        assert torch.equal(data.masks["text"].sum(1), n_tokens)
        assert float(data.features["text"][~data.masks["text"]].abs().sum()) == 0  # padding is stored as zeros
    with_image = [i for i, q in enumerate(q for q in scienceqa_questions if q[1] == "train") if q[6]]
    train_image = task.splits["train"].features["image"]
    assert not torch.allclose(train_image[with_image[0]], train_image[with_image[1]])  # each question its own image
    assert not (out / WORK_DIR).exists() and json.loads((out / "prepare.json").read_text())["sizes"] == {"train": 7, "val": 3, "test": 4}
    with pytest.raises(AutoFusionError, match="already holds a finished task"):
        prepare_scienceqa(official_dir, out, image_encoder=str(tiny_detr_dir), text_encoder=str(tiny_t5_dir), progress=False)


@pytest.mark.slow  # loads the 90 MB MiniLM checkpoint
def test_huggingface_layout_with_vit_and_minilm_in_fp16(hf_dir: Path, tiny_vit_dir: Path, minilm_dir: Path, minilm_encoder: Any, tmp_path: Path) -> None:
    out = prepare_scienceqa(hf_dir, tmp_path / "task", image_encoder=str(tiny_vit_dir), text_encoder=str(minilm_dir),
                            batch_size=3, max_text_tokens=24, shard_size=4, fp16=True, device="cpu", progress=False)
    spec = validate_task(out)
    assert spec.modalities == {"image": (5, D_MODEL), "text": (24, 384)}  # ViT: CLS + 2x2 patches; MiniLM: 384-d
    with safe_open(str(out / "train.safetensors"), framework="pt") as f:
        assert f.get_slice("image").get_dtype() == "F16" and f.get_slice("text").get_dtype() == "F16"
    assert json.loads((out / "prepare.json").read_text())["n_truncated"] > 0
    vit, minilm = load_image_encoder(str(tiny_vit_dir), "cpu"), minilm_encoder
    problems, loader, task = read_scienceqa(hf_dir), ImageLoader(), load_task(out)
    for split in ("train", "test"):
        data = task.splits[split]
        for i, p in enumerate(problems[split]):
            # each row holds its own question's features, as if encoded alone
            text = minilm.encode([p.prompt()], 24)
            assert torch.equal(data.masks["text"][i], text.mask[0])
            torch.testing.assert_close(data.features["text"][i], text.features[0], atol=2e-2, rtol=1e-2)
            if p.has_image:
                torch.testing.assert_close(data.features["image"][i], vit.encode([loader.load(p)]).features[0], atol=2e-2, rtol=1e-2)
            else:
                assert data.masks["image"][i].tolist() == [True, False, False, False, False]


def test_interrupted_extraction_resumes_without_recomputing_and_matches_an_uninterrupted_run(
        official_dir: Path, detr_encoder: Any, t5_encoder: Any, tmp_path: Path) -> None:
    problems = read_scienceqa(official_dir)
    options: dict[str, Any] = {"batch_size": 2, "shard_size": 2, "progress": False}  # one batch per shard
    reference = extract_task(problems, tmp_path / "reference", detr_encoder, t5_encoder, **options)

    out = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract_task(problems, out, detr_encoder, CountingText(t5_encoder, crash_at=3), **options)
    finished = sorted(p.name for p in (out / WORK_DIR / "train").iterdir())
    assert finished == ["00000.safetensors", "00001.safetensors"] and not (out / "task.json").exists()

    images, text = CountingImages(detr_encoder), CountingText(t5_encoder)
    extract_task(problems, out, images, text, **options)
    n_batches = sum(math.ceil(len(v) / 2) for v in problems.values())
    assert text.calls == n_batches - 2  # the two finished train shards were not recomputed
    n_images = sum(p.has_image for v in problems.values() for p in v)
    assert images.n_images == n_images - sum(p.has_image for p in problems["train"][:4])
    validate_task(out)
    got, want = _tensors(out), _tensors(reference)
    for split in want:
        assert set(got[split]) == set(want[split])
        for key in want[split]:
            assert torch.equal(got[split][key], want[split][key]), (split, key)
    assert (out / "meta.json").read_text() == (reference / "meta.json").read_text()
    assert (out / "task.json").read_text() == (reference / "task.json").read_text()


def test_resume_with_other_settings_is_refused(official_dir: Path, detr_encoder: Any, t5_encoder: Any, tmp_path: Path) -> None:
    problems = read_scienceqa(official_dir)
    with pytest.raises(RuntimeError):
        extract_task(problems, tmp_path / "t", detr_encoder, CountingText(t5_encoder, crash_at=2), batch_size=2, shard_size=2, progress=False)
    with pytest.raises(AutoFusionError, match=r"other settings \(differing: \['dtype'\]\).*delete"):
        extract_task(problems, tmp_path / "t", detr_encoder, t5_encoder, batch_size=2, shard_size=2, fp16=True, progress=False)


def test_splits_can_be_extracted_in_separate_calls(official_dir: Path, detr_encoder: Any, t5_encoder: Any, tmp_path: Path) -> None:
    problems = read_scienceqa(official_dir)
    out = tmp_path / "t"
    extract_task(problems, out, detr_encoder, t5_encoder, splits=("test",), batch_size=4, progress=False)
    assert not (out / "task.json").exists() and (out / WORK_DIR / "test" / "00000.safetensors").is_file()
    text = CountingText(t5_encoder)
    extract_task(problems, out, detr_encoder, text, splits=("train", "val"), batch_size=4, progress=False)
    assert text.calls == 2 + 1  # train (7) and val (3) only; test was kept
    assert load_task(out).splits["test"].labels.tolist() == [2, 0, 1, 0]


def test_corrupt_image_stops_extraction_with_the_problem_named(official_dir: Path, detr_encoder: Any, t5_encoder: Any, tmp_path: Path) -> None:
    (official_dir / "images" / "203" / "image.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(AutoFusionError, match=r"problem 203 .*corrupt.*Fix: re-download"):
        extract_task(read_scienceqa(official_dir), tmp_path / "t", detr_encoder, t5_encoder, progress=False)


def test_cli_subcommand_prepares_a_task(official_dir: Path, tiny_detr_dir: Path, tiny_t5_dir: Path, tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser(prog="autofusion")
    prepare = parser.add_subparsers(dest="command").add_parser("prepare")
    register_cli(prepare.add_subparsers(dest="dataset"))
    args = parser.parse_args(["prepare", "scienceqa", "--source", str(official_dir), "--out", str(tmp_path / "t"),
                              "--image-encoder", str(tiny_detr_dir), "--text-encoder", str(tiny_t5_dir),
                              "--limit", "2", "--device", "cpu", "--no-progress"])
    assert args.func(args) == 0
    assert "wrote task" in capsys.readouterr().out
    task = load_task(tmp_path / "t")
    assert {s: d.n for s, d in task.splits.items()} == {"train": 2, "val": 2, "test": 2}
    with pytest.raises(SystemExit):
        parser.parse_args(["prepare", "scienceqa", "--source", "x", "--out", "y", "--device", "tpu"])
