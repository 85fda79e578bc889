"""Built-in tasks: deterministic offline generation, the cache protocol, resolution and the
interaction each synthetic task claims to have (checked with cheap closed-form classifiers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.linear_model import RidgeClassifier

from autofusion.errors import TaskError
from autofusion.tasks import builtin, load_task, validate_task
from autofusion.tasks.builtin import (
    BUILTIN_TASKS,
    DEFAULT_TASK,
    BuiltinTask,
    builtin_task_dir,
    list_builtin,
    resolve_task,
)
from autofusion.tasks.format import SPLITS

FAST = ("pid-synergy", "pid-uniqueness", "tokens-interaction", "mc-attributes")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("autofusion_home") / "tasks"


def _tensors(task_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {s: load_file(str(task_dir / f"{s}.safetensors")) for s in SPLITS}


@pytest.mark.parametrize("name", FAST)
def test_generation_is_deterministic_across_roots(name: str, root: Path, tmp_path: Path) -> None:
    first, second = _tensors(builtin_task_dir(name, root)), _tensors(builtin_task_dir(name, tmp_path))
    for split in SPLITS:
        assert first[split].keys() == second[split].keys()
        for key, t in first[split].items():
            assert torch.equal(t, second[split][key]), f"{name}/{split}/{key} differs between runs"


def test_every_builtin_task_is_valid_and_listed(root: Path) -> None:
    rows = {r["name"]: r for r in list_builtin(root)}
    assert set(rows) == set(BUILTIN_TASKS) and DEFAULT_TASK in rows
    for name, row in rows.items():
        spec = validate_task(Path(row["path"]))
        assert spec.name == name and row["num_classes"] == spec.num_classes
        assert row["kind"] in ("synthetic", "real") and len(row["description"]) > 80
        assert sum(row["sizes"].values()) >= 1797 and row["modalities"]
    assert rows["pid-synergy"]["sizes"] == {"train": 2000, "val": 1000, "test": 1000}
    assert rows["digits-views"]["sizes"] == {"train": 1078, "val": 359, "test": 360}
    assert rows["tokens-interaction"]["modalities"] == {"image": {"shape": [8, 32]}, "text": {"shape": [12, 32]}}
    assert rows[DEFAULT_TASK]["default"] and rows["digits-views"]["kind"] == "real"


def test_digits_views_split_the_real_images_and_are_stratified(root: Path) -> None:
    task = load_task(builtin_task_dir("digits-views", root))
    train = task.splits["train"]
    image = torch.cat([train.features["top"], train.features["bottom"]], dim=1)  # back to 8x8
    assert image.shape[1:] == (8, 8) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    counts = [torch.bincount(task.splits[s].labels, minlength=10) for s in SPLITS]
    assert all(int(c.min()) > 0 for c in counts)
    shares = torch.stack([c / c.sum() for c in counts])
    assert float((shares - shares[0]).abs().max()) < 0.02  # stratified: same class shares per split


def test_tokens_task_has_variable_lengths_and_balanced_attributes(root: Path) -> None:
    task = load_task(builtin_task_dir("tokens-interaction", root))
    train = task.splits["train"]
    n_img, n_txt = train.masks["image"].sum(1), train.masks["text"].sum(1)
    assert set(n_img.tolist()) == {4, 8} and int(n_txt.min()) == 4 and int(n_txt.max()) == 12
    padded = train.features["image"][~train.masks["image"]]
    assert float(padded.abs().max()) == 0.0  # padding is zero, real tokens are not
    assert torch.bincount(train.labels, minlength=4).min() > 400


def test_mc_task_has_label_mask_and_subject_metadata(root: Path) -> None:
    task = load_task(builtin_task_dir("mc-attributes", root))
    test = task.splits["test"]
    assert test.label_mask is not None and test.meta is not None
    n_options = test.label_mask.sum(1)
    assert int(n_options.min()) == 2 and int(n_options.max()) == 4
    assert bool(test.label_mask.gather(1, test.labels[:, None]).all())
    assert set(test.meta["subject"]) == {"color", "shape", "size"}


def _linear_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """A closed-form linear classifier (ridge, one-vs-rest): fast and deterministic."""
    model = RidgeClassifier(alpha=10.0).fit(train_x, train_y)
    return float((model.predict(test_x) == test_y).mean())


def _products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a[:, :, None] * b[:, None, :]).reshape(len(a), -1)


def test_pid_synergy_needs_both_modalities(root: Path) -> None:
    task = load_task(builtin_task_dir("pid-synergy", root))
    tr, te = task.splits["train"], task.splits["val"]
    a, b = (tr.features[m].numpy() for m in "ab")
    ta, tb = (te.features[m].numpy() for m in "ab")
    y, ty = tr.labels.numpy(), te.labels.numpy()
    only_a = _linear_accuracy(a, y, ta, ty)
    only_b = _linear_accuracy(b, y, tb, ty)
    additive = _linear_accuracy(np.hstack([a, b]), y, np.hstack([ta, tb]), ty)
    product = _linear_accuracy(_products(a, b), y, _products(ta, tb), ty)
    assert max(only_a, only_b, additive) < 0.32, (only_a, only_b, additive)  # chance is 0.25
    assert product > 0.45, product


def test_pid_uniqueness_lives_in_modality_a_only(root: Path) -> None:
    task = load_task(builtin_task_dir("pid-uniqueness", root))
    tr, te = task.splits["train"], task.splits["val"]
    y, ty = tr.labels.numpy(), te.labels.numpy()
    only_b = _linear_accuracy(tr.features["b"].numpy(), y, te.features["b"].numpy(), ty)
    only_a = _linear_accuracy(tr.features["a"].numpy(), y, te.features["a"].numpy(), ty)
    assert only_b < 0.32 and only_a > 0.5, (only_a, only_b)


def test_pooled_tokens_carry_no_answer(root: Path) -> None:
    task = load_task(builtin_task_dir("tokens-interaction", root))

    def pooled(split: str) -> np.ndarray:
        s = task.splits[split]
        feats = []
        for m in ("image", "text"):
            mask = s.masks[m].float()[..., None]
            feats.append(((s.features[m] * mask).sum(1) / mask.sum(1)).numpy())
        return np.hstack(feats)

    acc = _linear_accuracy(pooled("train"), task.splits["train"].labels.numpy(), pooled("val"), task.splits["val"].labels.numpy())
    assert acc < 0.32, acc  # chance is 0.25: binding key to attribute needs token-level fusion


def test_resolve_accepts_directories_and_names(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOFUSION_HOME", str(root.parent))
    existing = builtin_task_dir("pid-uniqueness", root)
    assert resolve_task(str(existing)) == existing
    assert resolve_task("pid-uniqueness") == existing  # the cache under AUTOFUSION_HOME/tasks


def test_unknown_names_are_refused_with_the_list(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="pid-synergy") as err:
        builtin_task_dir("no-such-task", tmp_path)
    assert "not a built-in task" in str(err.value)
    with pytest.raises(TaskError, match="neither a directory nor a built-in task name") as err:
        resolve_task(str(tmp_path / "missing_dir"))
    assert "digits-views" in str(err.value)
    with pytest.raises(TaskError, match="task.json"):
        resolve_task(str(tmp_path))  # a directory that is not a task is validated, not ignored


def test_a_crashed_generation_does_not_break_the_next_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(out: Path) -> None:
        (out / "train.safetensors").write_bytes(b"half written")
        raise RuntimeError("simulated crash")

    real = BUILTIN_TASKS["pid-uniqueness"]
    monkeypatch.setitem(BUILTIN_TASKS, real.name, BuiltinTask(real.name, real.description, real.kind, crash))
    with pytest.raises(RuntimeError, match="simulated crash"):
        builtin_task_dir(real.name, tmp_path)
    assert not (tmp_path / real.name).exists()  # nothing half-written under the final name
    leftover = tmp_path / f".{real.name}.tmp-crashed"
    leftover.mkdir()
    (leftover / "task.json").write_text("{}")
    monkeypatch.setitem(BUILTIN_TASKS, real.name, real)
    task_dir = builtin_task_dir(real.name, tmp_path)
    assert validate_task(task_dir).name == real.name
    assert not leftover.exists()


def test_a_new_generator_version_regenerates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = BUILTIN_TASKS["pid-uniqueness"]
    task_dir = builtin_task_dir(real.name, tmp_path)
    (task_dir / "marker").write_text("old copy")
    assert builtin_task_dir(real.name, tmp_path) == task_dir and (task_dir / "marker").exists()  # cached
    bumped = BuiltinTask(real.name, real.description, real.kind, real.make, version=real.version + 1)
    monkeypatch.setitem(BUILTIN_TASKS, real.name, bumped)
    assert builtin_task_dir(real.name, tmp_path) == task_dir
    assert not (task_dir / "marker").exists()
    assert json.loads((task_dir / builtin.VERSION_FILE).read_text())["version"] == real.version + 1
