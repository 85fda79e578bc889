"""ScienceQA problems: reading either distribution layout into one list of `Problem` per split.

Two layouts are recognised, automatically:
- official (lupantech/ScienceQA): `problems.json` keyed by problem id, `pid_splits.json` (optional;
  the per-problem "split" field is used without it) and images under `images/<pid>/image.png`,
  `images/<split>/<pid>/image.png` or `<split>/<pid>/image.png`;
- Hugging Face (`derek-thomas/ScienceQA`): parquet files named `<split>-*.parquet` (in DIR or DIR/data)
  with an `image` column of {bytes, path} structs or nulls; "validation" is our "val".

This module reads text and metadata only; image pixels are decoded later by `images.py`. It checks
what can be checked cheaply up front (malformed records, image files that are missing) so that a bad
download fails in seconds, not after hours of feature extraction. It loads no model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from autofusion.errors import AutoFusionError
from autofusion.tasks.format import SPLITS

HF_SPLITS = {"train": "train", "validation": "val", "val": "val", "test": "test"}
_PARQUET_NAME = re.compile(r"^(train|validation|val|test)[-_.]")
_SHOWN = 5


class Layout(Enum):
    OFFICIAL = "official"
    HUGGINGFACE = "huggingface"


@dataclass(frozen=True)
class ImageRef:
    """Where a problem's image lives: a file on disk (`row is None`) or a row of a parquet file."""

    source: Path
    row: int | None = None


@dataclass(frozen=True)
class Problem:
    pid: str
    split: str
    question: str
    choices: tuple[str, ...]
    answer: int
    hint: str = ""
    subject: str = ""
    grade: str = ""
    topic: str = ""
    category: str = ""
    image: ImageRef | None = None

    @property
    def has_image(self) -> bool:
        return self.image is not None

    @property
    def has_context(self) -> bool:
        return bool(self.hint.strip())

    def prompt(self) -> str:
        """The text-encoder input, in the Multimodal-CoT "QCM" form."""
        options = " ".join(f"({chr(ord('A') + i)}) {c}" for i, c in enumerate(self.choices))
        context = self.hint.strip() or "N/A"
        return f"Question: {self.question.strip()}\nContext: {context}\nOptions: {options}"


def grade_band(grade: str) -> str:
    """'grade3' -> 'G1-6', 'grade11' -> 'G7-12', anything else -> ''."""
    match = re.search(r"(\d+)", grade or "")
    if not match:
        return ""
    return "G1-6" if int(match.group(1)) <= 6 else "G7-12"


def problem_meta(problems: Iterable[Problem]) -> dict[str, list[Any]]:
    """Columnar per-sample metadata for meta.json (what ScienceQA breaks accuracy down by)."""
    rows = list(problems)
    return {
        "pid": [p.pid for p in rows],
        "subject": [p.subject for p in rows],
        "grade": [p.grade for p in rows],
        "grade_band": [grade_band(p.grade) for p in rows],
        "topic": [p.topic for p in rows],
        "category": [p.category for p in rows],
        "has_image": [p.has_image for p in rows],
        "has_context": [p.has_context for p in rows],
        "n_choices": [len(p.choices) for p in rows],
    }


# ------------------------------------------------------------------------------------ detection


def detect_layout(source: str | Path) -> tuple[Layout, Path]:
    """Return the layout and the directory that holds it (DIR itself, DIR/data or DIR/data/scienceqa)."""
    root = Path(source)
    if not root.is_dir():
        raise AutoFusionError(f"ScienceQA source {str(root)!r} is not a directory. Fix: pass --source DIR, the folder holding problems.json (official layout) or the parquet files (Hugging Face layout).")
    for cand in (root, root / "data" / "scienceqa", root / "data"):
        if (cand / "problems.json").is_file():
            return Layout.OFFICIAL, cand
    for cand in (root, root / "data"):
        if cand.is_dir() and _parquet_files(cand):
            return Layout.HUGGINGFACE, cand
    found = sorted(p.name for p in root.iterdir())[:10]
    raise AutoFusionError(
        f"{root}: unknown ScienceQA layout (found {found}). Fix: point --source at the official layout "
        "(problems.json, pid_splits.json, images/) or at the Hugging Face derek-thomas/ScienceQA download "
        "(train-*.parquet, validation-*.parquet, test-*.parquet, directly or under data/)."
    )


def _parquet_files(folder: Path) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.parquet")):
        match = _PARQUET_NAME.match(path.name)
        if match:
            files.setdefault(HF_SPLITS[match.group(1)], []).append(path)
    return files


def read_scienceqa(source: str | Path, limit: int | None = None) -> dict[str, list[Problem]]:
    """All three splits, in dataset order, each cut to its first `limit` problems when given."""
    layout, root = detect_layout(source)
    problems = _read_official(root, limit) if layout is Layout.OFFICIAL else _read_huggingface(root, limit)
    for split in SPLITS:
        if not problems.get(split):
            raise AutoFusionError(f"{root}: ScienceQA split {split!r} has no problems. Fix: download all three splits (train, val/validation, test).")
    return problems


# ------------------------------------------------------------------------------------- official


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AutoFusionError(f"{path}: cannot be read as JSON ({exc}). Fix: re-download the ScienceQA data.") from None


def _official_splits(root: Path, problems: Mapping[str, Any]) -> dict[str, list[str]]:
    path = root / "pid_splits.json"
    if path.is_file():
        raw = _load_json(path)
        if not isinstance(raw, dict):
            raise AutoFusionError(f"{path}: expected an object mapping split names to problem ids. Fix: re-download pid_splits.json.")
        # "minival", "trainval" and "minitrain" are views of the same problems: ignored on purpose.
        return {split: [str(pid) for pid in raw.get(split, [])] for split in SPLITS}
    by_split: dict[str, list[str]] = {split: [] for split in SPLITS}
    for pid, record in problems.items():
        split = record.get("split") if isinstance(record, dict) else None
        if split in by_split:
            by_split[split].append(str(pid))
    return by_split


def _read_official(root: Path, limit: int | None) -> dict[str, list[Problem]]:
    raw = _load_json(root / "problems.json")
    if not isinstance(raw, dict):
        raise AutoFusionError(f"{root / 'problems.json'}: expected an object keyed by problem id. Fix: re-download problems.json.")
    out: dict[str, list[Problem]] = {}
    missing: list[Path] = []
    for split, pids in _official_splits(root, raw).items():
        rows = []
        for pid in pids[:limit]:
            if pid not in raw:
                raise AutoFusionError(f"{root / 'pid_splits.json'}: problem id {pid!r} ({split}) is not in problems.json. Fix: use the pid_splits.json that came with this problems.json.")
            image = _official_image(root, split, pid, raw[pid], missing)
            rows.append(_problem(raw[pid], pid, split, image, where=f"{root / 'problems.json'} [{pid}]"))
        out[split] = rows
    if missing:
        shown = ", ".join(str(p) for p in missing[:_SHOWN])
        raise AutoFusionError(
            f"{len(missing)} ScienceQA image(s) are missing, e.g. {shown}. Fix: download and unzip the "
            f"images (train.zip, val.zip, test.zip) into {root / 'images'} so that images/<pid>/image.png "
            "or images/<split>/<pid>/image.png exists."
        )
    return out


def _official_image(root: Path, split: str, pid: str, record: Any, missing: list[Path]) -> ImageRef | None:
    name = record.get("image") if isinstance(record, dict) else None
    if not name:
        return None
    candidates = (root / "images" / pid / name, root / "images" / split / pid / name, root / split / pid / name)
    for path in candidates:
        if path.is_file():
            return ImageRef(path)
    missing.append(candidates[0])
    return None


# ------------------------------------------------------------------------------------ huggingface


def _read_huggingface(root: Path, limit: int | None) -> dict[str, list[Problem]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise AutoFusionError("reading the Hugging Face ScienceQA layout needs pyarrow. Fix: pip install 'autofusion[data]'") from None
    out: dict[str, list[Problem]] = {}
    for split, files in _parquet_files(root).items():
        rows: list[Problem] = []
        for path in files:
            if limit is not None and len(rows) >= limit:
                break
            try:
                pf = pq.ParquetFile(path)
                names = set(pf.schema_arrow.names)
                text_cols = [c for c in ("question", "choices", "answer", "hint", "subject", "grade", "topic", "category") if c in names]
                table = pf.read(columns=text_cols)
                has_image = _image_present(pf) if "image" in names else [False] * table.num_rows
            except Exception as exc:  # noqa: BLE001 (pyarrow raises ArrowInvalid, OSError... for a damaged file)
                raise AutoFusionError(f"{path}: cannot be read as parquet ({type(exc).__name__}: {exc}). Fix: re-download this file.") from None
            for i, record in enumerate(table.to_pylist()):
                if limit is not None and len(rows) >= limit:
                    break
                image = ImageRef(path, i) if has_image[i] else None
                rows.append(_problem(record, f"{split}-{len(rows):05d}", split, image, where=f"{path} row {i}"))
        out[split] = rows
    return out


def _image_present(pf: Any) -> list[bool]:
    """Per row: does the `image` column hold image bytes? Read in batches so memory stays bounded."""
    import pyarrow as pa

    present: list[bool] = []
    for batch in pf.iter_batches(columns=["image"], batch_size=256):
        col = batch.column(0)
        valid = col.is_valid().to_pylist()
        if pa.types.is_struct(col.type) and col.type.get_field_index("bytes") >= 0:
            has_bytes = col.field("bytes").is_valid().to_pylist()
            valid = [v and b for v, b in zip(valid, has_bytes)]
        present.extend(valid)
    return present


# ------------------------------------------------------------------------------------------ shared


def _problem(record: Any, pid: str, split: str, image: ImageRef | None, where: str) -> Problem:
    if not isinstance(record, dict):
        raise AutoFusionError(f"{where}: expected a problem object, got {type(record).__name__}. Fix: re-download the data.")
    for key in ("question", "choices", "answer"):
        if key not in record or record[key] is None:
            raise AutoFusionError(f"{where}: missing field {key!r}. Fix: re-download the data; every ScienceQA problem has question, choices and answer.")
    choices = record["choices"]
    if not isinstance(choices, (list, tuple)) or len(choices) < 2:
        raise AutoFusionError(f"{where}: 'choices' must be a list of at least 2 options, got {choices!r}. Fix: re-download the data.")
    answer = record["answer"]
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise AutoFusionError(f"{where}: answer {answer!r} is not an index into its {len(choices)} choices. Fix: re-download the data.")
    return Problem(
        pid=pid,
        split=split,
        question=str(record["question"]),
        choices=tuple(str(c) for c in choices),
        answer=answer,
        hint=str(record.get("hint") or ""),
        subject=str(record.get("subject") or ""),
        grade=str(record.get("grade") or ""),
        topic=str(record.get("topic") or ""),
        category=str(record.get("category") or ""),
        image=image,
    )
