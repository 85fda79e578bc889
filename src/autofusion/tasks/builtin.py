"""Built-in tasks: names, honest descriptions, and an on-disk cache generated on first use.

`resolve_task` turns what a user passes to `--task` (a feature-task directory or a built-in name)
into a validated directory. Built-in tasks are generated offline from fixed seeds (`synthetic.py`)
or from data that ships with scikit-learn, written with `write_task` into
`$AUTOFUSION_HOME/tasks/<name>/` (AUTOFUSION_HOME defaults to `~/.cache/autofusion`).

Cache protocol: a task is generated into a temporary sibling directory and renamed into place, so
a directory whose `task.json` exists is complete. `builtin.json` records the generator version; a
cached task of another version is regenerated. Generation takes an exclusive file lock where the
platform has one (`fcntl`), so concurrent processes generate once; without the lock the rename
still keeps every reader from seeing a half-written task. This module does not train anything.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np

from autofusion.errors import TaskError
from autofusion.tasks import synthetic
from autofusion.tasks.format import describe, read_spec, split_sizes, validate_task, write_task

try:  # POSIX only; elsewhere the atomic rename alone protects readers
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

VERSION_FILE = "builtin.json"
TMP_MARK = ".tmp-"
OLD_MARK = ".old-"


@dataclass(frozen=True)
class BuiltinTask:
    """A task AutoFusion can generate by name; `make(out_dir)` writes it with `write_task`."""

    name: str
    description: str
    kind: Literal["synthetic", "real"]
    make: Callable[[Path], None]
    version: int = 1  # bump when `make` changes what it writes: cached copies are then regenerated


# ------------------------------------------------------------------------------------ digits


def make_digits_views(out_dir: Path, name: str, description: str, seed: int) -> None:
    """scikit-learn's 8x8 digits as two views of 4 row tokens each; stratified 60/20/20 split."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    pixels = (images / 16.0).astype(np.float32).reshape(-1, 8, 8)
    index = np.arange(len(labels))
    train, rest = train_test_split(index, test_size=0.4, stratify=labels, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=seed)
    splits = {
        split: {
            "top": torch.from_numpy(np.ascontiguousarray(pixels[rows, :4, :])),
            "bottom": torch.from_numpy(np.ascontiguousarray(pixels[rows, 4:, :])),
            "label": torch.from_numpy(labels[rows].astype(np.int64)),
        }
        for split, rows in (("train", np.sort(train)), ("val", np.sort(val)), ("test", np.sort(test)))
    }
    write_task(out_dir, name, 10, splits, description=description)


# ---------------------------------------------------------------------------------- registry


def _pid(kind: synthetic.PidKind, seed: int) -> Callable[[Path], None]:
    return lambda out: synthetic.make_pid(out, kind, f"pid-{kind}", _DESCRIPTIONS[f"pid-{kind}"], seed)


def _named(fn: Callable[..., None], name: str, seed: int) -> Callable[[Path], None]:
    return lambda out: fn(out, name, _DESCRIPTIONS[name], seed)


_PID_COMMON = (
    "Synthetic, generated offline from a fixed seed: each modality is a 32-dim vector made by a fixed "
    "random 2-layer tanh network from 4 complex Gaussian latent factors plus 2 nuisance factors, "
    "with Gaussian noise, standardised on train; 4 classes = the quadrant of the angle of a complex "
    "score s; 2000/1000/1000 samples. "
)
_DESCRIPTIONS: dict[str, str] = {
    "pid-redundancy": _PID_COMMON + "Redundancy: both modalities encode the same latent u and s = <u, w> "
    "for a fixed w, so either modality alone suffices.",
    "pid-uniqueness": _PID_COMMON + "Uniqueness: s = <u_a, w> depends on modality a only; modality b "
    "encodes an independent latent and is a distractor.",
    "pid-synergy": _PID_COMMON + "Synergy: s = sum_j u_a[j] * u_b[j]; given one modality the angle of s "
    "is uniform, so each modality alone is exactly at chance (25%) and only a fusion that forms "
    "products of the two modalities' factors recovers the label.",
    "pid-synergy3": "Synthetic, generated offline from a fixed seed: three 32-dim vector modalities a, b, "
    "c, each a fixed random tanh network of 2 complex Gaussian latent factors plus 2 nuisance factors "
    "with noise; 2 classes = the half-plane of the angle of sum_j u_a[j] u_b[j] u_c[j]. Any single "
    "modality or pair is exactly at chance; only three-way interaction carries the label.",
    "tokens-interaction": "Synthetic, generated offline from a fixed seed: `image` holds 4 or 8 region "
    "tokens [8, 32] and `text` 4-12 word tokens [12, 32], both padded with masks and made by fixed "
    "random tanh networks plus noise. Each region has a distinct key (of 8) and an attribute (of 4, "
    "equally frequent within every image); one word of the text names a key present in the image, "
    "the others are fillers; the label is the attribute of the named region. Mean pooling keeps only "
    "attribute counts, which are balanced, so it is at chance; attention from the question to the "
    "regions can bind key to attribute. 2000/1000/1000 samples.",
    "digits-views": "Real data shipped with scikit-learn (load_digits: 1,797 8x8 handwritten digits, "
    "pixel values scaled to [0, 1]): `top` = rows 0-3 and `bottom` = rows 4-7, each as 4 row tokens of "
    "8 pixels; labels 0-9; stratified 60/20/20 split with a fixed seed (1078/359/360).",
    "mc-attributes": "Synthetic, generated offline from a fixed seed: `image` (24-dim) encodes an object's "
    "three attributes (color, shape, size; 5 values each) and `question` (16-dim) one of 4 phrasings "
    "asking for one attribute, each through a fixed random tanh network plus noise. The label is the "
    "value of the asked attribute; `label_mask` offers it among 2-4 valid options of 5 (the others "
    "chosen at random); meta.json gives the asked attribute as `subject`. 2000/1000/1000 samples.",
}

BUILTIN_TASKS: dict[str, BuiltinTask] = {
    t.name: t
    for t in (
        BuiltinTask("pid-synergy", _DESCRIPTIONS["pid-synergy"], "synthetic", _pid("synergy", 1), version=1),
        BuiltinTask("pid-redundancy", _DESCRIPTIONS["pid-redundancy"], "synthetic", _pid("redundancy", 2), version=1),
        BuiltinTask("pid-uniqueness", _DESCRIPTIONS["pid-uniqueness"], "synthetic", _pid("uniqueness", 3), version=1),
        BuiltinTask("pid-synergy3", _DESCRIPTIONS["pid-synergy3"], "synthetic", _named(synthetic.make_pid_synergy3, "pid-synergy3", 4), version=1),
        BuiltinTask("tokens-interaction", _DESCRIPTIONS["tokens-interaction"], "synthetic", _named(synthetic.make_tokens_interaction, "tokens-interaction", 2), version=1),
        BuiltinTask("mc-attributes", _DESCRIPTIONS["mc-attributes"], "synthetic", _named(synthetic.make_mc_attributes, "mc-attributes", 5), version=1),
        BuiltinTask("digits-views", _DESCRIPTIONS["digits-views"], "real", _named(make_digits_views, "digits-views", 0), version=1),
    )
}
DEFAULT_TASK = "pid-synergy3"  # the demo: only all three modalities together carry the label


# ------------------------------------------------------------------------------------- cache


def default_root() -> Path:
    """Where built-in tasks are cached: `$AUTOFUSION_HOME/tasks` (default `~/.cache/autofusion/tasks`)."""
    home = os.environ.get("AUTOFUSION_HOME") or str(Path.home() / ".cache" / "autofusion")
    return Path(home).expanduser() / "tasks"


def _unknown(name: str) -> TaskError:
    return TaskError(f"{name!r} is not a built-in task. Fix: use one of {sorted(BUILTIN_TASKS)} (see `autofusion tasks`)")


def _is_current(task_dir: Path, task: BuiltinTask) -> bool:
    if not (task_dir / "task.json").is_file():
        return False
    try:
        record = json.loads((task_dir / VERSION_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("name") == task.name and record.get("version") == task.version


@contextmanager
def _generation_lock(root: Path, name: str) -> Iterator[bool]:
    """Hold an exclusive lock for generating `name`; yields whether a real lock is held."""
    if fcntl is None:
        yield False
        return
    with open(root / f".{name}.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove_leftovers(root: Path, name: str) -> None:
    """Delete temp/old directories of `name` left by a crashed generation (called under the lock)."""
    for path in root.glob(f".{name}.*"):
        if path.is_dir() and (TMP_MARK in path.name or OLD_MARK in path.name):
            shutil.rmtree(path, ignore_errors=True)


def _generate(root: Path, task: BuiltinTask, final: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{task.name}{TMP_MARK}", dir=root))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is meant to be readable like any dir
    try:
        (tmp / VERSION_FILE).write_text(json.dumps({"name": task.name, "version": task.version}) + "\n")
        task.make(tmp)  # write_task writes task.json last and validates the result
        if _is_current(final, task):  # another process finished first (no lock on this platform)
            return
        if final.exists():  # a stale version: move it aside first, rename is atomic per directory
            old = Path(tempfile.mkdtemp(prefix=f".{task.name}{OLD_MARK}", dir=root))
            os.replace(final, old / task.name)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if not _is_current(final, task):  # another process won the race with a good copy? keep it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def builtin_task_dir(name: str, root: str | Path | None = None) -> Path:
    """The directory of built-in task `name` under `root` (default `default_root()`), generated if needed."""
    task = BUILTIN_TASKS.get(name)
    if task is None:
        raise _unknown(name)
    base = Path(root).expanduser() if root is not None else default_root()
    final = base / name
    if _is_current(final, task):
        return final
    base.mkdir(parents=True, exist_ok=True)
    with _generation_lock(base, name) as locked:
        if _is_current(final, task):  # generated by another process while we waited
            return final
        if locked:
            _remove_leftovers(base, name)
        _generate(base, task, final)
    return final


def resolve_task(name_or_path: str | Path) -> Path:
    """A validated feature-task directory for `--task`: an existing directory, else a built-in name."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        validate_task(path)
        return path
    if str(name_or_path) in BUILTIN_TASKS:
        return builtin_task_dir(str(name_or_path))
    raise TaskError(
        f"--task {str(name_or_path)!r} is neither a directory nor a built-in task name. "
        f"Fix: pass a feature-task directory (DESIGN §1) or one of {sorted(BUILTIN_TASKS)}"
    )


def list_builtin(root: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per built-in task for `autofusion tasks` (generates tasks not cached yet).

    Each row is `format.describe` of the task (name, num_classes, metric, description,
    modalities {m: {"shape": [...]}}, sizes {split: n}) plus kind, default and path.
    """
    rows = []
    for name, task in BUILTIN_TASKS.items():
        task_dir = builtin_task_dir(name, root)
        row = describe(read_spec(task_dir), split_sizes(task_dir))  # task.json's layout plus sizes
        row.update(kind=task.kind, default=name == DEFAULT_TASK, path=str(task_dir))
        rows.append(row)
    return rows
