"""Full training: weights come back from the sandbox over the wire, load with torch alone and
reproduce the reported test accuracy; malformed weight frames are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import CONCAT

from autofusion.evaluation.final import full_settings, train_full
from autofusion.evaluation.protocol import TrainSettings
from autofusion.evaluation.weights import recv_state_dict
from autofusion.sandbox import wire

# Runs in a fresh interpreter that imports torch and safetensors only, never autofusion.
REPRODUCE = textwrap.dedent("""
    import json, sys
    import torch
    from safetensors.torch import load_file
    model_dir, task_dir = sys.argv[1], sys.argv[2]
    spec = json.load(open(task_dir + "/task.json"))
    ns = {}
    exec(open(model_dir + "/model.py").read(), ns)
    test = load_file(task_dir + "/test.safetensors")
    inputs = {k: (v.float() if v.is_floating_point() else v) for k, v in test.items() if k not in ("label", "label_mask")}
    out = {}
    for seed_file in sys.argv[3:]:
        torch.manual_seed(123)  # a different init: only the loaded weights may matter
        model = ns["FusionModel"]({m: tuple(d["shape"]) for m, d in spec["modalities"].items()}, spec["num_classes"])
        model.load_state_dict(load_file(model_dir + "/" + seed_file), strict=True)
        model.eval()
        with torch.no_grad():
            logits = model(**inputs)
        out[seed_file] = int((logits.argmax(1) == test["label"]).sum()) / len(test["label"])
    assert not any(name.startswith("autofusion") for name in sys.modules)
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def trained(evaluator, tiny_task: Path, tmp_path_factory: pytest.TempPathFactory):
    settings = full_settings(TrainSettings(threads=1, lr=3e-3), epochs=4)
    return train_full(evaluator, CONCAT, "concat", settings, [0, 1], tmp_path_factory.mktemp("full"))


def test_full_training_uses_cosine_warmup_and_all_epochs(trained) -> None:
    stats = trained.stats()
    assert stats["n_seeds"] == 2 and stats["n_failed"] == 0
    assert stats["settings"]["schedule"] == "cosine" and stats["settings"]["warmup_epochs"] == 1
    assert stats["settings"]["patience"] == 0
    for seed in stats["seeds"]:
        assert seed["epochs_run"] == 4 and len(seed["curves"]["val_accuracy"]) == 4
        assert seed["val_accuracy"] == max(seed["curves"]["val_accuracy"])  # best-val checkpoint
    tests = [s["test_accuracy"] for s in stats["seeds"]]
    assert stats["test_accuracy"] == pytest.approx(np.mean(tests))
    assert stats["test_accuracy_std"] == pytest.approx(np.std(tests, ddof=1))
    saved = json.loads((trained.directory / "result.json").read_text())
    assert saved["test_accuracy"] == stats["test_accuracy"]
    assert len((trained.directory / "curves.csv").read_text().splitlines()) == 1 + 2 * 4


def test_saved_weights_load_with_torch_alone_and_reproduce_test_accuracy(trained, tiny_task: Path) -> None:
    files = [run.weights_file for run in trained.runs]
    assert all(files)
    out = subprocess.run([sys.executable, "-c", REPRODUCE, str(trained.directory), str(tiny_task), *files],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    reproduced = json.loads(out.stdout)
    for run in trained.runs:
        assert reproduced[run.weights_file] == pytest.approx(run.result.test_accuracy, abs=1e-9)


def _frames(*frames: wire.Frame):
    it = iter(frames)
    return lambda limit: next(it)


def weight(name: str, data: np.ndarray, shape: list[int], dtype: str = "float32", epoch: int = 0) -> wire.Frame:
    return wire.Frame({"type": "weight", "epoch": epoch, "name": name, "dtype": dtype, "shape": shape}, data)


def test_valid_weight_frames_become_tensors_of_the_declared_dtype_and_shape() -> None:
    got = recv_state_dict(_frames(weight("w", np.arange(6, dtype=np.float32), [2, 3]),
                                  weight("flag", np.array([1, 0], dtype=np.int64), [2], "bool"),
                                  wire.Frame({"type": "weights_end", "epoch": 0, "n": 2})), 0, 1 << 20)
    assert got["w"].shape == (2, 3) and got["w"][1, 2] == 5.0
    assert got["flag"].dtype == torch.bool and got["flag"].tolist() == [True, False]


@pytest.mark.parametrize("frames, problem", [
    ((weight("w", np.zeros(5, np.float32), [2, 3]),), "does not match"),
    ((weight("../etc", np.zeros(1, np.float32), [1]),), "bad weight name"),
    ((weight("w", np.zeros(1, np.float32), [1], dtype="object"),), "not allowed"),
    ((weight("w", np.array([np.nan], np.float32), [1]),), "NaN"),
    ((weight("b", np.array([2], np.int64), [1], "bool"),), "other than 0 and 1"),
    ((weight("w", np.zeros(1, np.float32), [1]), weight("w", np.zeros(1, np.float32), [1])), "twice"),
    ((weight("w", np.zeros(1, np.float32), [1], epoch=3),), "epoch"),
    ((weight("w", np.zeros(1, np.float32), [1]), wire.Frame({"type": "weights_end", "epoch": 0, "n": 2})), "announces"),
    ((weight("w", np.zeros(300, np.float32), [300]),), "exceeds"),
])
def test_malformed_weight_frames_are_refused(frames, problem: str) -> None:
    with pytest.raises(wire.WireError, match=problem):
        recv_state_dict(_frames(*frames), 0, max_bytes=1000)


def test_train_command_writes_weights_curves_and_mean_std(tiny_task: Path, tmp_path: Path, capsys) -> None:
    from autofusion.cli import main

    path = tmp_path / "concat.py"
    path.write_text(CONCAT)
    code = main(["train", str(path), "--task", str(tiny_task), "--epochs", "2", "--seeds", "2", "--threads", "1",
                 "--out", str(tmp_path / "out"), "--json"])
    assert code == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["n_seeds"] == 2 and stats["test_accuracy"] is not None and stats["test_accuracy_std"] is not None
    for name in ("model.py", "seed0.safetensors", "seed1.safetensors", "curves.csv", "result.json"):
        assert (tmp_path / "out" / "concat" / name).is_file(), name


def test_each_weight_frame_is_read_only_within_the_budget_left() -> None:
    """The parent tells the reader how many bytes the next array may have before it is read, so a
    child cannot make it buffer more than the state dict's budget (an outside red-team pass made
    an earlier version hold ~4x the child's memory limit)."""
    limits: list[int] = []
    frames = iter([weight("w", np.zeros(100, dtype=np.float32), [100]),
                   wire.Frame({"type": "weights_end", "epoch": 0, "n": 1})])

    def recv(limit: int) -> wire.Frame:
        limits.append(limit)
        return next(frames)

    recv_state_dict(recv, 0, max_bytes=4000)
    assert limits[0] <= 2000 and limits[1] < limits[0]  # declared float64 would double the cost
