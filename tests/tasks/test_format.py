"""Feature-task directories: valid ones load, every malformed one is refused with file, tensor and fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from autofusion.errors import TaskError
from autofusion.tasks.format import load_inputs, load_task, validate_task

from helpers import write_tiny_task


@pytest.fixture
def task(tmp_path: Path) -> Path:
    return write_tiny_task(tmp_path / "t", n_train=20, n_eval=10)


def _edit(task: Path, split: str, **changes: torch.Tensor | None) -> None:
    path = task / f"{split}.safetensors"
    tensors = load_file(str(path))
    for key, value in changes.items():
        if value is None:
            tensors.pop(key)
        else:
            tensors[key] = value
    save_file(tensors, str(path))


def test_valid_task_loads_with_declared_shapes(task: Path) -> None:
    t = load_task(task)
    assert t.spec.modalities == {"a": (6,), "b": (4, 5)}
    assert t.splits["train"].features["b"].shape == (20, 4, 5)
    assert t.splits["val"].masks["b"].dtype == torch.bool
    assert t.splits["test"].labels.dtype == torch.int64


def test_worker_inputs_for_eval_splits_carry_no_labels(task: Path) -> None:
    split = load_inputs(task, "test", with_labels=False)
    assert split.labels is None
    assert set(split.inputs()) == {"a", "b", "b_mask"}


def _refused(task: Path, *needles: str) -> str:
    with pytest.raises(TaskError) as info:
        validate_task(task)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    assert "Fix:" in message
    return message


def test_missing_task_json(task: Path) -> None:
    (task / "task.json").unlink()
    _refused(task, "task.json", "missing")


def test_missing_split(task: Path) -> None:
    (task / "val.safetensors").unlink()
    _refused(task, "val.safetensors", "missing")


def test_modality_missing_from_a_split(task: Path) -> None:
    _edit(task, "test", a=None)
    _refused(task, "test.safetensors", '"a"', "missing")


def test_shape_not_as_declared(task: Path) -> None:
    _edit(task, "train", b=torch.zeros(20, 4, 7))
    _refused(task, "train.safetensors", '"b"', "shape")


def test_wrong_feature_dtype(task: Path) -> None:
    _edit(task, "train", a=torch.zeros(20, 6, dtype=torch.int32))
    _refused(task, '"a"', "dtype")


def test_nan_features(task: Path) -> None:
    a = torch.zeros(10, 6)
    a[3, 2] = float("nan")
    _edit(task, "val", a=a)
    _refused(task, "val.safetensors", "NaN or inf", "1 samples")


def test_labels_out_of_range(task: Path) -> None:
    _edit(task, "train", label=torch.full((20,), 5, dtype=torch.int64))
    _refused(task, "label", "outside [0, 2)")


def test_labels_not_int64(task: Path) -> None:
    _edit(task, "train", label=torch.zeros(20, dtype=torch.int32))
    _refused(task, "label", "int64")


def test_mismatched_sample_counts(task: Path) -> None:
    _edit(task, "train", a=torch.zeros(19, 6))
    _refused(task, "samples")


def test_unknown_tensor(task: Path) -> None:
    _edit(task, "train", extra=torch.zeros(20))
    _refused(task, "unknown tensors", "extra")


def test_mask_on_vector_modality_is_unknown(task: Path) -> None:
    _edit(task, "train", a_mask=torch.ones(20, 6, dtype=torch.bool))
    _refused(task, "a_mask")


def test_unknown_task_json_key(task: Path) -> None:
    raw = json.loads((task / "task.json").read_text())
    raw["labels"] = 3
    (task / "task.json").write_text(json.dumps(raw))
    _refused(task, "unknown keys", "labels")


def test_corrupt_safetensors(task: Path) -> None:
    (task / "test.safetensors").write_bytes(b"\x00\x01garbage")
    _refused(task, "test.safetensors", "safetensors")


def test_label_mask_must_allow_the_true_label(tmp_path: Path) -> None:
    task = write_tiny_task(tmp_path / "lm", n_train=20, n_eval=10, num_classes=3, label_mask=True)
    assert load_task(task).splits["train"].label_mask.shape == (20, 3)
    _edit(task, "train", label_mask=torch.zeros(20, 3, dtype=torch.bool))
    _refused(task, "label_mask", "true label")


def test_meta_length_must_match(task: Path) -> None:
    (task / "meta.json").write_text(json.dumps({"test": {"subject": ["x"] * 3}}))
    _refused(task, "meta.json", "test.subject", "3 values")


def test_cli_refuses_bad_task_with_exit_2_and_no_traceback(task: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autofusion.cli import main

    (task / "val.safetensors").unlink()
    code = main(["evaluate", __file__, "--task", str(task)])
    err = capsys.readouterr().err
    assert code == 2
    assert "val.safetensors" in err and "Traceback" not in err


def test_memory_mapped_inputs_equal_the_copied_ones(task: Path) -> None:
    mapped = load_inputs(task, "train", with_labels=True, memory_map=True)
    copied = load_inputs(task, "train", with_labels=True, memory_map=False)
    for key, value in copied.inputs().items():
        assert torch.equal(mapped.inputs()[key], value), key
        assert mapped.inputs()[key].dtype == value.dtype
    assert torch.equal(mapped.labels, copied.labels)
    # Backed by the file mapping, not by a copy: writing through a slice is private to this process.
    before = (task / "train.safetensors").read_bytes()
    mapped.features["a"][0, 0] = 123.0
    assert (task / "train.safetensors").read_bytes() == before


def test_unlabelled_splits_reach_workers_without_a_byte_of_their_labels(task: Path) -> None:
    """The label block of val/test never enters the zygote, not even as mapped pages next to the
    features (an outside red-team pass read it that way with ctypes when whole files were mapped)."""
    import subprocess
    import sys

    script = ("import sys; from autofusion.sandbox.zygote import load_worker_data; "
              "d = load_worker_data(sys.argv[1]); print(open('/proc/self/maps').read())")
    maps = subprocess.run([sys.executable, "-c", script, str(task)], capture_output=True, text=True, check=True).stdout
    assert str(task / "train.safetensors") in maps  # train (labels allowed) is memory-mapped
    assert "val.safetensors" not in maps and "test.safetensors" not in maps
    val = load_inputs(task, "val", with_labels=False)
    full = load_file(str(task / "val.safetensors"))
    assert val.labels is None
    for key, value in val.inputs().items():
        assert torch.equal(value, full[key]) and value.dtype == full[key].dtype, key
