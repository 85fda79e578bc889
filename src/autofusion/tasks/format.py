"""Feature-task directories (DESIGN §1): writing, validating and loading them.

A task directory holds `task.json`, `train/val/test.safetensors` and an optional `meta.json`.
`validate_task` refuses a malformed directory before any compute is spent, with a message that
names the file, the tensor and the fix. `load_task` returns tensors as float32 features, bool masks
and int64 labels. It does not train or evaluate anything.

Conventions:
- a modality of shape `[D]` is a vector per sample, `[L, D]` a token sequence per sample;
- `<modality>_mask` (bool `[N, L]`, True = a real token) is allowed only for token modalities;
- `label_mask` (bool `[N, num_classes]`, True = a valid answer) marks the classes a sample may take;
- `meta.json` is columnar per split: `{"test": {"subject": ["natural science", ...], ...}}`.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from autofusion.errors import TaskError

SPLITS = ("train", "val", "test")
TASK_KEYS = {"name", "num_classes", "metric", "modalities", "description"}
METRICS = {"accuracy"}
FLOAT_DTYPES = {torch.float32, torch.float16, torch.bfloat16, torch.float64}
MASK_SUFFIX = "_mask"
LABEL = "label"
LABEL_MASK = "label_mask"


@dataclass(frozen=True)
class TaskSpec:
    """What `task.json` declares, plus where it was read from."""

    name: str
    num_classes: int
    modalities: dict[str, tuple[int, ...]]
    metric: str = "accuracy"
    description: str = ""
    path: Path | None = None

    def is_tokens(self, modality: str) -> bool:
        return len(self.modalities[modality]) == 2

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "metric": self.metric,
            "description": self.description,
            "modalities": {m: {"shape": list(s)} for m, s in self.modalities.items()},
        }


@dataclass
class Split:
    """One split in memory: float32 features, bool masks, int64 labels (None when withheld)."""

    features: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    labels: torch.Tensor | None = None
    label_mask: torch.Tensor | None = None
    meta: dict[str, list[Any]] | None = None

    @property
    def n(self) -> int:
        for t in (*self.features.values(), self.labels, self.label_mask):
            if t is not None:
                return int(t.shape[0])
        raise ValueError("empty split")

    def inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for a candidate's forward: features and masks, never labels."""
        return {**self.features, **{f"{m}{MASK_SUFFIX}": t for m, t in self.masks.items()}}


@dataclass
class Task:
    spec: TaskSpec
    splits: dict[str, Split]

    @property
    def name(self) -> str:
        return self.spec.name


# ---------------------------------------------------------------------------------------- writing


def write_task(
    out_dir: str | Path,
    name: str,
    num_classes: int,
    splits: Mapping[str, Mapping[str, torch.Tensor]],
    meta: Mapping[str, Mapping[str, list[Any]]] | None = None,
    description: str = "",
) -> Path:
    """Write a feature-task directory; shapes are inferred from the train split and validated.

    `splits` maps split name to tensors named as in DESIGN §1 (modalities, `<m>_mask`, `label`,
    optional `label_mask`). `task.json` is written last, so its presence means the task is complete.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = splits["train"]
    modalities = {
        k: tuple(int(d) for d in v.shape[1:])
        for k, v in train.items()
        if k not in (LABEL, LABEL_MASK) and not k.endswith(MASK_SUFFIX)
    }
    for split, tensors in splits.items():
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / f"{split}.safetensors"))
    if meta is not None:
        (out / "meta.json").write_text(json.dumps(meta))
    spec = TaskSpec(name=name, num_classes=num_classes, modalities=modalities, description=description)
    (out / "task.json").write_text(json.dumps(spec.to_json(), indent=2) + "\n")
    validate_task(out)
    return out


# ------------------------------------------------------------------------------------- validation


def _fail(where: str, what: str, fix: str) -> TaskError:
    return TaskError(f"{where}: {what}. Fix: {fix}")


def read_spec(task_dir: str | Path) -> TaskSpec:
    """Read and check `task.json` alone."""
    root = Path(task_dir)
    if not root.is_dir():
        raise _fail(str(root), "is not a directory", "pass a feature-task directory or a built-in task name (see `autofusion tasks`)")
    path = root / "task.json"
    if not path.is_file():
        raise _fail(str(path), "missing", 'write task.json: {"name": ..., "num_classes": ..., "metric": "accuracy", "modalities": {"image": {"shape": [100, 256]}, ...}}')
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(str(path), f"is not valid JSON ({exc})", "fix the JSON syntax") from None
    if not isinstance(raw, dict):
        raise _fail(str(path), "must hold a JSON object", 'write {"name": ..., "num_classes": ..., "modalities": {...}}')
    unknown = set(raw) - TASK_KEYS
    if unknown:
        raise _fail(str(path), f"unknown keys {sorted(unknown)}", f"use only {sorted(TASK_KEYS)}")
    for key in ("name", "num_classes", "modalities"):
        if key not in raw:
            raise _fail(str(path), f'missing key "{key}"', f'add "{key}" (see DESIGN §1)')
    num_classes = raw["num_classes"]
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise _fail(str(path), f"num_classes={num_classes!r} is not an integer >= 2", "set num_classes to the number of label values")
    metric = raw.get("metric", "accuracy")
    if metric not in METRICS:
        raise _fail(str(path), f"metric {metric!r} is not supported", f"use one of {sorted(METRICS)}")
    mods = raw["modalities"]
    if not isinstance(mods, dict) or not mods:
        raise _fail(str(path), '"modalities" must be a non-empty object', 'write "modalities": {"image": {"shape": [100, 256]}}')
    modalities: dict[str, tuple[int, ...]] = {}
    for m, decl in mods.items():
        if not (isinstance(m, str) and m.isidentifier() and m.isascii()) or m in (LABEL, LABEL_MASK) or m.endswith(MASK_SUFFIX) or m.startswith("_"):
            raise _fail(str(path), f"modality name {m!r} is not usable as a Python keyword argument", 'use an ASCII identifier such as "image" or "text", not ending in "_mask"')
        shape = decl.get("shape") if isinstance(decl, dict) else None
        if set(decl if isinstance(decl, dict) else {}) - {"shape", "description"}:
            raise _fail(str(path), f'modality "{m}" has unknown keys {sorted(set(decl) - {"shape", "description"})}', 'give each modality only {"shape": [...]}')
        if not (isinstance(shape, list) and len(shape) in (1, 2) and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
            raise _fail(str(path), f'modality "{m}" has shape {shape!r}', "give a per-sample shape: [D] for a vector or [L, D] for tokens, positive integers")
        modalities[m] = tuple(shape)
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise _fail(str(path), f"name {name!r} is not a non-empty string", "set a name")
    return TaskSpec(name=name, num_classes=num_classes, modalities=modalities, metric=metric,
                    description=str(raw.get("description", "")), path=root)


def _check_tensor(file: str, key: str, t: torch.Tensor, n: int | None, shape: tuple[int, ...], dtypes: set[torch.dtype], dtype_fix: str) -> int:
    if t.dtype not in dtypes:
        raise _fail(file, f'tensor "{key}" has dtype {t.dtype}', dtype_fix)
    if tuple(t.shape[1:]) != shape or t.dim() != len(shape) + 1:
        raise _fail(file, f'tensor "{key}" has shape {list(t.shape)}, expected [N, {", ".join(map(str, shape))}]' if shape else f'tensor "{key}" has shape {list(t.shape)}, expected [N]',
                    "make it match task.json (per-sample shape after the sample dimension)")
    if n is not None and t.shape[0] != n:
        raise _fail(file, f'tensor "{key}" has {t.shape[0]} samples but other tensors have {n}', "give every tensor in a split the same first dimension N")
    if t.shape[0] == 0:
        raise _fail(file, f'tensor "{key}" has no samples', "every split needs at least one sample")
    return t.shape[0]


def _check_split(spec: TaskSpec, split: str, path: Path, tensors: Mapping[str, torch.Tensor]) -> int:
    file = str(path)
    allowed = set(spec.modalities) | {LABEL, LABEL_MASK} | {f"{m}{MASK_SUFFIX}" for m in spec.modalities if spec.is_tokens(m)}
    unknown = set(tensors) - allowed
    if unknown:
        raise _fail(file, f"unknown tensors {sorted(unknown)}", f"keep only {sorted(allowed)} (masks only for token modalities)")
    n: int | None = None
    for m, shape in spec.modalities.items():
        if m not in tensors:
            raise _fail(file, f'modality "{m}" is missing', f'add a float tensor "{m}" shaped [N, {", ".join(map(str, shape))}]')
        t = tensors[m]
        n = _check_tensor(file, m, t, n, shape, FLOAT_DTYPES, "store features as float32 or float16")
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).flatten(1).any(1).sum())
            raise _fail(file, f'tensor "{m}" holds NaN or inf in {bad} samples', "replace non-finite values (e.g. torch.nan_to_num) or drop those samples")
        mk = f"{m}{MASK_SUFFIX}"
        if mk in tensors:
            n = _check_tensor(file, mk, tensors[mk], n, shape[:1], {torch.bool}, "store masks as bool (True = real token)")
            empty = int((~tensors[mk].any(1)).sum())
            if empty:
                raise _fail(file, f'tensor "{mk}" has {empty} samples with no real token', "mark at least one token per sample as True (e.g. a zero token for a missing input)")
    if LABEL not in tensors:
        raise _fail(file, f'tensor "{LABEL}" is missing', 'add an int64 tensor "label" shaped [N]')
    labels = tensors[LABEL]
    n = _check_tensor(file, LABEL, labels, n, (), {torch.int64}, "store labels as int64 (labels.long())")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= spec.num_classes:
        raise _fail(file, f'tensor "{LABEL}" has values in [{lo}, {hi}], outside [0, {spec.num_classes})', "remap labels to 0..num_classes-1 or raise num_classes in task.json")
    if LABEL_MASK in tensors:
        lm = tensors[LABEL_MASK]
        n = _check_tensor(file, LABEL_MASK, lm, n, (spec.num_classes,), {torch.bool}, "store label_mask as bool [N, num_classes]")
        if not bool(lm.gather(1, labels[:, None]).all()):
            raise _fail(file, f'tensor "{LABEL_MASK}" marks the true label of some samples as invalid', "set label_mask[i, label[i]] = True for every sample")
    assert n is not None
    return n


def _check_meta(root: Path, sizes: dict[str, int]) -> dict[str, dict[str, list[Any]]] | None:
    path = root / "meta.json"
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(str(path), f"is not valid JSON ({exc})", "fix the JSON or delete meta.json") from None
    if not isinstance(meta, dict) or set(meta) - set(SPLITS):
        raise _fail(str(path), "must be an object keyed by split (train/val/test)", 'write {"test": {"subject": [...], ...}, ...}')
    for split, cols in meta.items():
        if not isinstance(cols, dict):
            raise _fail(str(path), f'"{split}" must map field names to lists', 'write {"test": {"subject": [...]}}')
        for col, values in cols.items():
            if not isinstance(values, list) or len(values) != sizes[split]:
                got = len(values) if isinstance(values, list) else type(values).__name__
                raise _fail(str(path), f'"{split}.{col}" has {got} values but the split has {sizes[split]} samples', "give one value per sample, in sample order")
    return meta


def _read_tensors(path: Path, keys: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys()) if keys is None else [k for k in keys if k in f.keys()]
            return {k: f.get_tensor(k) for k in names}
    except (OSError, ValueError, RuntimeError) as exc:
        raise _fail(str(path), f"cannot be read as safetensors ({str(exc).splitlines()[0]})", "write it with safetensors.torch.save_file") from None
    except Exception as exc:  # safetensors raises its own SafetensorError for corrupt headers
        raise _fail(str(path), f"cannot be read as safetensors ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", "write it with safetensors.torch.save_file") from None


check_split_tensors = _check_split  # public name: checks one split's tensors (used on shards)


def validate_task(task_dir: str | Path) -> TaskSpec:
    """Check a whole task directory, one split in memory at a time; raise TaskError naming the
    file, tensor and fix."""
    spec = read_spec(task_dir)
    sizes = {}
    for split in SPLITS:
        path = Path(task_dir) / f"{split}.safetensors"
        if not path.is_file():
            raise _missing_split(path, split)
        sizes[split] = _check_split(spec, split, path, _read_tensors(path))
    _check_meta(Path(task_dir), sizes)
    return spec


def _missing_split(path: Path, split: str) -> TaskError:
    return _fail(str(path), f'split "{split}" is missing', f"write {split}.safetensors with one tensor per modality and \"label\" (train/val/test are all required: select on val, report on test)")


def load_task(task_dir: str | Path, with_labels: Iterable[str] = SPLITS, features: bool = True) -> Task:
    """Validate and load a task. Labels are kept only for the splits in `with_labels`; with
    `features=False` only labels, label masks and metadata are loaded (what the trusted
    evaluator needs), after validating the whole directory."""
    if not features:
        spec = validate_task(task_dir)
        meta = _check_meta(Path(task_dir), split_sizes(task_dir)) or {}
        splits = {}
        for split in SPLITS:
            t = _read_tensors(Path(task_dir) / f"{split}.safetensors", [LABEL, LABEL_MASK])
            splits[split] = Split(features={}, labels=t[LABEL] if split in with_labels else None,
                                  label_mask=t.get(LABEL_MASK), meta=meta.get(split))
        return Task(spec=spec, splits=splits)
    return _load(task_dir, with_labels=tuple(with_labels))[0]


def _load(task_dir: str | Path, with_labels: tuple[str, ...]) -> tuple[Task, dict[str, int]]:
    spec = read_spec(task_dir)
    root = Path(task_dir)
    splits: dict[str, Split] = {}
    sizes: dict[str, int] = {}
    for split in SPLITS:
        path = root / f"{split}.safetensors"
        if not path.is_file():
            raise _missing_split(path, split)
        tensors = _read_tensors(path)
        sizes[split] = _check_split(spec, split, path, tensors)
        splits[split] = Split(
            features={m: tensors[m].float() for m in spec.modalities},
            masks={m: tensors[f"{m}{MASK_SUFFIX}"] for m in spec.modalities if f"{m}{MASK_SUFFIX}" in tensors},
            labels=tensors[LABEL] if split in with_labels else None,
            label_mask=tensors.get(LABEL_MASK),
        )
    meta = _check_meta(root, sizes)
    for split, s in splits.items():
        s.meta = (meta or {}).get(split)
    return Task(spec=spec, splits=splits), sizes


_MMAP_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                "I64": torch.int64, "BOOL": torch.bool}
_ALL_DTYPES = {**_MMAP_DTYPES, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8}


def mmap_tensors(path: Path, keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """Tensors backed by a private, copy-on-write memory map of a safetensors file.

    Pages are read lazily and shared with the page cache, with forked children and with every other
    worker that maps the same file; a write (which workers never do) would copy only that page.
    The whole file is mapped, so this is only for files whose every tensor may be seen (`load_inputs`
    reads the others with `pread_tensors`). Falls back to a plain read for dtypes or layouts it does
    not handle.
    """
    with open(path, "rb") as f:
        size, header = _header(f.fileno())
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        info = header.get(key)
        if info is None:
            continue
        dtype = _MMAP_DTYPES.get(info["dtype"])
        start, end = info["data_offsets"]
        itemsize = torch.empty((), dtype=dtype).element_size() if dtype is not None else 0
        offset = 8 + size + start
        if dtype is None or end == start or offset % itemsize:
            out.update(pread_tensors(path, [key]))
            continue
        out[key] = torch.frombuffer(mapped, dtype=dtype, count=(end - start) // itemsize, offset=offset).view(info["shape"])
    return out


def _header(fd: int) -> tuple[int, dict[str, Any]]:
    """A safetensors file's header length and header (tensor name -> dtype, shape, byte offsets
    relative to the end of the header)."""
    (size,) = struct.unpack("<Q", os.pread(fd, 8, 0))
    return size, json.loads(os.pread(fd, size, 8))


def pread_tensors(path: Path, keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """Exactly the bytes of the named tensors, copied into fresh memory with unbuffered `pread`.

    Nothing else of the file enters the process: no memory map, no read-ahead buffer (safetensors'
    own loader maps the whole file). This is how val/test inputs reach the processes that run
    candidate code, so the label block beside them never does.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size, header = _header(fd)
        out: dict[str, torch.Tensor] = {}
        for key in keys:
            info = header.get(key)
            if info is None:
                continue
            dtype = _ALL_DTYPES.get(info["dtype"])
            if dtype is None:
                raise _fail(str(path), f"tensor {key!r} has dtype {info['dtype']}, which AutoFusion does not read", "store features as float16/float32 and masks as bool")
            start, end = info["data_offsets"]
            buf = bytearray(end - start)
            view, done = memoryview(buf), 0
            while done < len(buf):
                n = os.preadv(fd, [view[done:]], 8 + size + start + done)
                if n <= 0:
                    raise _fail(str(path), f"ends inside tensor {key!r}", "rewrite the task with autofusion.tasks.write_task")
                done += n
            out[key] = (torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)).view(info["shape"])
        return out
    finally:
        os.close(fd)


def load_inputs(task_dir: str | Path, split: str, with_labels: bool, memory_map: bool = True) -> Split:
    """Load one split of an already validated task, reading labels only when asked.

    Used by evaluation workers. Without labels (val/test), only the feature and mask bytes are read
    (`pread_tensors`): the label block never enters the process, not even as mapped pages. With
    labels and `memory_map`, the features are memory-mapped (see `mmap_tensors`) rather than copied.
    """
    spec = read_spec(task_dir)
    keys = list(spec.modalities) + [f"{m}{MASK_SUFFIX}" for m in spec.modalities] + [LABEL_MASK]
    path = Path(task_dir) / f"{split}.safetensors"
    if with_labels:
        keys.append(LABEL)
        tensors = mmap_tensors(path, keys) if memory_map else _read_tensors(path, keys)
    else:
        tensors = pread_tensors(path, keys)
    return Split(  # features keep their stored dtype (float16 stays half the memory); batches are cast
        features={m: tensors[m] for m in spec.modalities},
        masks={m: tensors[f"{m}{MASK_SUFFIX}"] for m in spec.modalities if f"{m}{MASK_SUFFIX}" in tensors},
        labels=tensors.get(LABEL),
        label_mask=tensors.get(LABEL_MASK),
    )


def describe(spec: TaskSpec, sizes: Mapping[str, int] | None = None) -> dict[str, Any]:
    """A JSON-able summary used by `autofusion tasks` and reports."""
    out = spec.to_json()
    if sizes:
        out["sizes"] = dict(sizes)
    return out


def split_sizes(task_dir: str | Path) -> dict[str, int]:
    """Sample counts per split, read from the safetensors headers only (cheap)."""
    sizes = {}
    for split in SPLITS:
        with safe_open(str(Path(task_dir) / f"{split}.safetensors"), framework="pt") as f:
            sizes[split] = f.get_slice(LABEL).get_shape()[0]
    return sizes

