"""The evaluator: honest metrics from the parent, faults of candidates as statuses, same as a plain loop."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autofusion.evaluation import Budgets, ProxyEvaluator, Status, TrainSettings
from autofusion.sandbox.zygote import load_worker_data
from autofusion.tasks.format import load_task

from helpers import CONCAT, write_tiny_task

FAST = TrainSettings(epochs=3, threads=1, timeout_s=60)


def test_concat_trains_and_reports_every_field(evaluator: ProxyEvaluator) -> None:
    r = evaluator.evaluate(CONCAT, FAST)
    assert r.status is Status.OK, r.error
    assert 0.0 <= r.val_accuracy <= 1.0 and 0.0 <= r.test_accuracy <= 1.0
    assert r.params == (6 + 5) * 32 + 32 + 32 * 2 + 2 + 1  # weights and biases, + the 1.0 of clamp(min=1.0) (graph.count_params)
    assert r.flops > 0
    assert r.epochs_run == 3 and len(r.curves.val_accuracy) == 3 and len(r.curves.train_loss) == 3
    assert r.val_accuracy == max(r.curves.val_accuracy)
    assert r.curves.val_accuracy[r.best_epoch] == r.val_accuracy


def test_same_seed_same_metrics_and_other_seed_differs(evaluator: ProxyEvaluator) -> None:
    a = evaluator.evaluate(CONCAT, FAST)
    b = evaluator.evaluate(CONCAT, FAST)
    c = evaluator.evaluate(CONCAT, FAST.with_(seed=1))
    assert (a.val_accuracy, a.test_accuracy, a.curves.train_loss) == (b.val_accuracy, b.test_accuracy, b.curves.train_loss)
    assert a.curves.train_loss != c.curves.train_loss


def plain_loop(task_dir: Path, code: str, settings: TrainSettings) -> tuple[float, float]:
    """The same training written as a bare PyTorch loop in this process."""
    torch.set_num_threads(settings.threads)
    task = load_task(task_dir)
    namespace: dict = {}
    exec(code, namespace)
    train, val, test = (task.splits[s] for s in ("train", "val", "test"))
    torch.manual_seed(settings.seed)
    model = namespace["FusionModel"](dict(task.spec.modalities), task.spec.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    gen = torch.Generator().manual_seed(settings.seed)
    x = train.inputs()
    best_val, best_test = -1.0, 0.0
    for _ in range(settings.epochs):
        model.train()
        order = torch.randperm(train.n, generator=gen)
        for start in range(0, train.n, settings.batch_size):
            idx = order[start:start + settings.batch_size]
            loss = F.cross_entropy(model(**{k: v[idx] for k, v in x.items()}), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            opt.step()
        model.eval()
        with torch.no_grad():
            val_acc = (model(**val.inputs()).argmax(1) == val.labels).float().mean().item()
            test_acc = (model(**test.inputs()).argmax(1) == test.labels).float().mean().item()
        if val_acc > best_val:
            best_val, best_test = val_acc, test_acc
    return best_val, best_test


def test_matches_a_plain_pytorch_loop(evaluator: ProxyEvaluator, tiny_task: Path) -> None:
    settings = TrainSettings(epochs=4, threads=1, patience=0)
    ours = evaluator.evaluate(CONCAT, settings)
    val, test = plain_loop(tiny_task, CONCAT, settings)
    assert ours.val_accuracy == pytest.approx(val, abs=1e-6)
    assert ours.test_accuracy == pytest.approx(test, abs=1e-6)


def test_early_stopping_uses_patience(evaluator: ProxyEvaluator) -> None:
    stuck = CONCAT.replace("return self.mlp(torch.cat(parts, dim=-1))", "return self.mlp(torch.cat(parts, dim=-1)) * 0.0")
    r = evaluator.evaluate(stuck, TrainSettings(epochs=10, patience=2, threads=1))
    assert r.status is Status.OK
    assert r.epochs_run == 3 and r.best_epoch == 0


@pytest.mark.parametrize("body, stage, needle", [
    ("raise RuntimeError('boom')", "smoke", "boom"),
    ("return torch.zeros(3, 7)", "smoke", "shape"),
    ("return self.mlp(torch.cat(parts, dim=-1)) * float('nan')", "smoke", "NaN"),
    ("return 5", "smoke", "Tensor"),
])
def test_bad_forward_is_rejected_before_training(evaluator: ProxyEvaluator, body: str, stage: str, needle: str) -> None:
    code = CONCAT.replace("return self.mlp(torch.cat(parts, dim=-1))", body)
    r = evaluator.evaluate(code, FAST)
    assert r.status is Status.REJECTED and r.stage == stage
    assert needle in r.error
    assert r.epochs_run == 0


def test_syntax_error_and_forbidden_import_rejected_by_gate(evaluator: ProxyEvaluator) -> None:
    r = evaluator.evaluate("class FusionModel(:\n", FAST)
    assert r.status is Status.REJECTED and r.stage == "gate" and "line 1" in r.error
    r = evaluator.evaluate("import os\n" + CONCAT, FAST)
    assert r.status is Status.REJECTED and "os" in r.error


def test_infinite_loop_times_out_within_limit(evaluator: ProxyEvaluator) -> None:
    code = CONCAT.replace("return self.mlp(torch.cat(parts, dim=-1))", "while True:\n                pass")
    r = evaluator.evaluate(code, TrainSettings(epochs=2, threads=1, timeout_s=3, smoke_timeout_s=2))
    assert r.status is Status.TIMEOUT
    assert r.wall_seconds < 6


def test_loop_during_training_times_out(evaluator: ProxyEvaluator) -> None:
    code = CONCAT.replace("        parts = []", "        parts = []\n        if self.training and inputs['a'].shape[0] > 3:\n            while True:\n                pass")
    r = evaluator.evaluate(code, TrainSettings(epochs=2, threads=1, timeout_s=4, smoke_timeout_s=3))
    assert r.status is Status.TIMEOUT and r.stage == "train"


def test_nan_during_training_fails(evaluator: ProxyEvaluator) -> None:
    code = CONCAT.replace("        parts = []", "        parts = []\n        if self.training and inputs['a'].shape[0] > 3:\n            return torch.full((inputs['a'].shape[0], 2), float('nan'))")
    r = evaluator.evaluate(code, FAST)
    assert r.status is Status.FAILED and r.stage == "train" and "nan" in r.error.lower()


def test_process_death_is_reported_as_failed(tiny_task: Path, shared_sandbox) -> None:
    unsafe = ProxyEvaluator(tiny_task, sandbox=shared_sandbox, static_policy=False)
    code = "import os\n" + CONCAT.replace("        parts = []", "        parts = []\n        if self.training and inputs['a'].shape[0] > 3:\n            os._exit(7)")
    r = unsafe.evaluate(code, FAST)
    assert r.status is Status.FAILED and "exit code 7" in r.error


def test_budget_rejects_before_training(tiny_task: Path, shared_sandbox) -> None:
    strict = ProxyEvaluator(tiny_task, sandbox=shared_sandbox, budgets=Budgets(max_params=100))
    r = strict.evaluate(CONCAT, FAST)
    assert r.status is Status.REJECTED and r.stage == "budget" and "--max-params" in r.error
    assert r.params is not None and r.params > 100 and r.epochs_run == 0


def test_label_mask_restricts_predictions_to_valid_options(tmp_path: Path) -> None:
    task = write_tiny_task(tmp_path / "mc", n_train=60, n_eval=40, num_classes=3, label_mask=True)
    always_invalid = CONCAT.replace("return self.mlp(torch.cat(parts, dim=-1))",
                                    "out = self.mlp(torch.cat(parts, dim=-1))\n        return out + torch.tensor([0.0, 0.0, 1000.0])")
    ev = ProxyEvaluator(task)
    try:
        r = ev.evaluate(always_invalid, FAST)
    finally:
        ev.close()
    assert r.status is Status.OK, r.error
    labels = load_task(task).splits["test"].labels
    # Class 2 is never valid: had it been predicted, accuracy would be exactly 0.
    assert r.test_accuracy > 0.2
    assert r.test_accuracy <= float((labels < 2).float().mean())


def test_worker_data_holds_no_val_or_test_labels(tiny_task: Path) -> None:
    data = load_worker_data(str(tiny_task))
    assert set(data.eval_inputs) == {"val", "test"}
    for inputs in data.eval_inputs.values():
        assert set(inputs) == {"a", "b", "b_mask"}
    test_labels = load_task(tiny_task).splits["test"].labels
    leaked = [t for t in data.train_inputs.values() if t.shape == test_labels.shape and torch.equal(t, test_labels)]
    assert not leaked and data.train_labels.shape[0] == 240
    assert np.isfinite(data.train_inputs["a"].numpy()).all()


def test_text_from_the_candidate_is_made_safe_to_store_and_print() -> None:
    from autofusion.evaluation.evaluator import untrusted_text
    from autofusion.store import SQLiteStore

    raw = "a\udcff\x1b[2J\x1b]0;title\x07 \u202efake\x00 b\n\tc" + "x" * 10_000
    clean = untrusted_text(raw)
    assert clean.startswith("a? ") and "title" not in clean, clean[:30]  # the whole OSC sequence goes
    assert "\x1b" not in clean and "\x00" not in clean and "\u202e" not in clean and "\n\tc" in clean
    assert len(clean) <= 8000
    clean.encode("utf-8")  # no lone surrogate left
    store = SQLiteStore(Path(tempfile.mkdtemp()) / "run.db")  # the store also survives raw text
    cid = store.add_candidate(origin="llm", code="x = '\udcff'", code_hash="h", error=raw)
    assert store.candidate(cid).error.startswith("a?")
