"""ScienceQA -> feature-task directory (DESIGN §1): the `autofusion prepare scienceqa` pipeline.

`prepare_scienceqa` reads the problems (either layout), loads the two encoders and calls
`extract_task`, which does the work with encoder objects passed in (so tests can wrap them):
1. plan: the text length L = min(--max-text-tokens, longest tokenized question), num_classes = the
   most choices, the task spec, and the settings that identify the extraction;
2. extract each split in shards of `shard_size` questions, batch by batch, into `<out>/.scienceqa-work`;
   every shard is checked with the task validator's rules before it is kept, finished shards are
   skipped on a rerun;
3. once all three splits are extracted: stream the shards into `{split}.safetensors`, write
   `meta.json` and `prepare.json` (provenance), then `task.json` last, check the headers and delete
   the work directory.

Tensors: `image` [N, n_tokens, D] and `image_mask` (a question without an image holds zeros and only
its first token marked real, since the validator needs one real token per sample; meta `has_image`
says so too), `text` [N, L, D] with `text_mask`, `label` (the answer index) and `label_mask` (the
question's valid options). It does not train or evaluate anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from autofusion.errors import AutoFusionError, ConfigError
from autofusion.tasks.format import SPLITS, TaskSpec, check_split_tensors, read_spec
from autofusion.tasks.scienceqa.encoders import (
    DEFAULT_IMAGE_ENCODER,
    DEFAULT_TEXT_ENCODER,
    ImageEncoder,
    TextEncoder,
    load_image_encoder,
    load_text_encoder,
    resolve_device,
)
from autofusion.tasks.scienceqa.images import ImageLoader
from autofusion.tasks.scienceqa.problems import Problem, problem_meta, read_scienceqa
from autofusion.tasks.scienceqa.shards import WORK_DIR, ShardStore, write_concatenated

log = logging.getLogger(__name__)
TASK_NAME = "scienceqa"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Plan:
    spec: TaskSpec
    text_length: int
    n_truncated: int
    dtype: torch.dtype
    settings: dict[str, Any]


def prepare_scienceqa(
    source: str | Path,
    out: str | Path,
    *,
    image_encoder: str = DEFAULT_IMAGE_ENCODER,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    batch_size: int = 16,
    max_text_tokens: int = 256,
    limit: int | None = None,
    splits: Sequence[str] = SPLITS,
    device: str = "auto",
    fp16: bool = False,
    progress: bool = True,
    shard_size: int = 1024,
) -> Path:
    """Extract ScienceQA features into the task directory `out` and return it.

    `limit` keeps the first N questions of each split; `splits` restricts which splits this call
    extracts (the task is assembled once all three are done, possibly over several calls); `fp16`
    stores features as float16 (the encoders still run in float32). Resumes an interrupted run.
    """
    _check_options(batch_size, max_text_tokens, limit, splits, shard_size)
    out = Path(out)
    _refuse_finished(out)
    problems = read_scienceqa(source, limit)
    dev = resolve_device(device)
    log.info("loading encoders on %s: image %s, text %s", dev, image_encoder, text_encoder)
    images = load_image_encoder(image_encoder, dev)
    texts = load_text_encoder(text_encoder, dev)
    return extract_task(problems, out, images, texts, batch_size=batch_size, max_text_tokens=max_text_tokens,
                        splits=splits, fp16=fp16, progress=progress, shard_size=shard_size, source=str(source))


def _check_options(batch_size: int, max_text_tokens: int, limit: int | None, splits: Sequence[str], shard_size: int) -> None:
    for flag, value in (("--batch-size", batch_size), ("--max-text-tokens", max_text_tokens), ("--shard-size", shard_size)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{flag} {value!r} must be a positive integer. Fix: pass e.g. {flag} 16.")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"--limit {limit!r} must be a positive integer. Fix: pass e.g. --limit 100, or leave it out for all questions.")
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise ConfigError(f"--splits {list(splits)!r}: choose among {list(SPLITS)} (Hugging Face 'validation' is 'val').")


def _refuse_finished(out: Path) -> None:
    if (out / "task.json").is_file() and not (out / WORK_DIR).is_dir():
        raise AutoFusionError(f"{out} already holds a finished task (task.json). Fix: pass another --out, or delete {out} to extract again.")


def extract_task(
    problems: Mapping[str, Sequence[Problem]],
    out: str | Path,
    image_encoder: ImageEncoder,
    text_encoder: TextEncoder,
    *,
    batch_size: int = 16,
    max_text_tokens: int = 256,
    splits: Sequence[str] = SPLITS,
    fp16: bool = False,
    progress: bool = True,
    shard_size: int = 1024,
    source: str = "",
) -> Path:
    """Steps 1-3 of the module docstring with ready encoders; `problems` must hold all three splits."""
    out = Path(out)
    _refuse_finished(out)
    plan = plan_task(problems, image_encoder, text_encoder, max_text_tokens, fp16, shard_size)
    store = ShardStore(out, plan.settings)
    store.open()
    loader = ImageLoader()
    with _progress_bar(progress) as bar:
        for split in splits:
            _extract_split(split, problems[split], plan, store, image_encoder, text_encoder, loader, batch_size, shard_size, bar)
    pending = [s for s in SPLITS if not all(store.done(s, k) for k in range(_n_shards(len(problems[s]), shard_size)))]
    if pending:
        log.info("extracted %s; splits %s remain: rerun with them to assemble the task", list(splits), pending)
        return out
    _assemble(out, problems, plan, store, shard_size, source)
    return out


def plan_task(problems: Mapping[str, Sequence[Problem]], image_encoder: ImageEncoder, text_encoder: TextEncoder,
              max_text_tokens: int, fp16: bool, shard_size: int) -> Plan:
    lengths = text_encoder.token_lengths([p.prompt() for s in SPLITS for p in problems[s]])
    length = min(max_text_tokens, text_encoder.max_length, max(lengths))
    n_truncated = sum(n > length for n in lengths)
    if n_truncated:
        log.warning("%d of %d questions are longer than %d tokens and are truncated", n_truncated, len(lengths), length)
    num_classes = max(len(p.choices) for s in SPLITS for p in problems[s])
    n_total = sum(len(problems[s]) for s in SPLITS)
    spec = TaskSpec(
        name=TASK_NAME,
        num_classes=num_classes,
        modalities={"image": (image_encoder.n_tokens, image_encoder.dim), "text": (length, text_encoder.dim)},
        description=(f"ScienceQA multiple choice, {n_total} questions. image: {image_encoder.name} tokens (a question "
                     f"without an image holds zeros with only token 0 marked real); text: {text_encoder.name} over "
                     "'Question: ... Context: ... Options: (A) ...'; label_mask marks each question's options."),
    )
    dtype = torch.float16 if fp16 else torch.float32
    settings = {
        "format": FORMAT_VERSION,
        "image_encoder": image_encoder.name,
        "text_encoder": text_encoder.name,
        "modalities": {m: list(s) for m, s in spec.modalities.items()},
        "num_classes": num_classes,
        "dtype": str(dtype).removeprefix("torch."),
        "shard_size": shard_size,
        "samples": {s: _digest(problems[s]) for s in SPLITS},
    }
    return Plan(spec=spec, text_length=length, n_truncated=n_truncated, dtype=dtype, settings=settings)


def _digest(problems: Sequence[Problem]) -> str:
    h = hashlib.sha256()
    for p in problems:
        h.update(json.dumps([p.pid, p.prompt(), p.answer, p.has_image]).encode())
    return h.hexdigest()[:16]


def _n_shards(n: int, shard_size: int) -> int:
    return math.ceil(n / shard_size)


# ------------------------------------------------------------------------------------- extraction


def _extract_split(split: str, items: Sequence[Problem], plan: Plan, store: ShardStore, image_encoder: ImageEncoder,
                   text_encoder: TextEncoder, loader: ImageLoader, batch_size: int, shard_size: int, bar: _Bar) -> None:
    bar.start(split, len(items))
    for index in range(_n_shards(len(items), shard_size)):
        chunk = items[index * shard_size:(index + 1) * shard_size]
        if store.done(split, index):
            bar.advance(len(chunk))
            continue
        tensors = encode_shard(chunk, plan, image_encoder, text_encoder, loader, batch_size, bar.advance)
        check_split_tensors(plan.spec, split, store.path(split, index), tensors)
        store.save(split, index, tensors)
        log.debug("%s shard %d: %d questions", split, index, len(chunk))


def encode_shard(chunk: Sequence[Problem], plan: Plan, image_encoder: ImageEncoder, text_encoder: TextEncoder,
                 loader: ImageLoader, batch_size: int, advance: Callable[[int], None] = lambda n: None) -> dict[str, torch.Tensor]:
    """The task tensors for one shard, filled batch by batch in the storage dtype."""
    n, (n_img, d_img), (n_txt, d_txt) = len(chunk), plan.spec.modalities["image"], plan.spec.modalities["text"]
    image = torch.zeros(n, n_img, d_img, dtype=plan.dtype)
    image_mask = torch.zeros(n, n_img, dtype=torch.bool)
    text = torch.zeros(n, n_txt, d_txt, dtype=plan.dtype)
    text_mask = torch.zeros(n, n_txt, dtype=torch.bool)
    for start in range(0, n, batch_size):
        batch = chunk[start:start + batch_size]
        rows = [start + i for i, p in enumerate(batch) if p.has_image]
        if rows:
            enc = image_encoder.encode([loader.load(chunk[r]) for r in rows])
            image[rows] = _cast(enc.features, plan.dtype, batch[0].split, image_encoder.name)
            image_mask[rows] = enc.mask
        image_mask[[start + i for i, p in enumerate(batch) if not p.has_image], 0] = True
        enc = text_encoder.encode([p.prompt() for p in batch], n_txt)
        text[start:start + len(batch)] = _cast(enc.features, plan.dtype, batch[0].split, text_encoder.name)
        text_mask[start:start + len(batch)] = enc.mask
        advance(len(batch))
    n_choices = torch.tensor([len(p.choices) for p in chunk])
    return {
        "image": image,
        "image_mask": image_mask,
        "text": text,
        "text_mask": text_mask,
        "label": torch.tensor([p.answer for p in chunk], dtype=torch.int64),
        "label_mask": torch.arange(plan.spec.num_classes)[None, :] < n_choices[:, None],
    }


def _cast(features: torch.Tensor, dtype: torch.dtype, split: str, encoder: str) -> torch.Tensor:
    out = features.to(dtype)
    if dtype == torch.float16 and bool(torch.isfinite(features).all()) and not bool(torch.isfinite(out).all()):
        raise AutoFusionError(f"{encoder} features of a {split} batch exceed the float16 range. Fix: rerun without --fp16.")
    return out


# --------------------------------------------------------------------------------------- assembly


def _assemble(out: Path, problems: Mapping[str, Sequence[Problem]], plan: Plan, store: ShardStore, shard_size: int, source: str) -> None:
    for split in SPLITS:
        shards = [store.path(split, k) for k in range(_n_shards(len(problems[split]), shard_size))]
        write_concatenated(out / f"{split}.safetensors", shards)
    (out / "meta.json").write_text(json.dumps({s: problem_meta(problems[s]) for s in SPLITS}))
    provenance = {**plan.settings, "source": source, "text_length": plan.text_length, "n_truncated": plan.n_truncated,
                  "sizes": {s: len(problems[s]) for s in SPLITS}}
    (out / "prepare.json").write_text(json.dumps(provenance, indent=2) + "\n")
    tmp = out / "task.json.partial"
    tmp.write_text(json.dumps(plan.spec.to_json(), indent=2) + "\n")
    os.replace(tmp, out / "task.json")
    _check_headers(out, plan.spec, {s: len(problems[s]) for s in SPLITS})
    store.remove()
    log.info("wrote %s", out)


def _check_headers(out: Path, spec: TaskSpec, sizes: Mapping[str, int]) -> None:
    """Shapes and dtypes from the file headers only: every shard's content was validated already."""
    read_spec(out)
    expected = {"label": [], "label_mask": [spec.num_classes]}
    for m, shape in spec.modalities.items():
        expected[m], expected[f"{m}_mask"] = list(shape), list(shape[:1])
    for split, n in sizes.items():
        path = out / f"{split}.safetensors"
        with safe_open(str(path), framework="pt") as f:
            got = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
        want = {k: [n, *s] for k, s in expected.items()}
        if got != want:
            raise AutoFusionError(f"{path}: assembled tensors {got} differ from {want}. Fix: delete {out} and rerun (this is a bug if it repeats).")


# --------------------------------------------------------------------------------------- progress


class _Bar:
    """One rich progress line per split; does nothing when progress is off."""

    def __init__(self, progress: Any | None) -> None:
        self._progress = progress
        self._task: Any = None

    def start(self, split: str, total: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(f"ScienceQA {split}", total=total)

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[_Bar]:
    if not enabled:
        yield _Bar(None)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        yield _Bar(progress)
