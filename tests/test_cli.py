"""The command line: check, evaluate, baselines and tasks behave as the README says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autofusion.cli import main

from helpers import CONCAT

EVAL_FLAGS = ["--epochs", "2", "--threads", "1"]


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "concat.py"
    path.write_text(CONCAT)
    return path


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_check_accepts_a_good_module(good_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(good_file)]) == 0
    assert capsys.readouterr().out.strip().endswith(": ok")


def test_check_reports_every_violation_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom os import system\nimport subprocess\n\nclass FusionModel(torch.nn.Module):\n    pass\n")
    assert main(["check", str(bad), "--json"]) == 1
    report = _json(capsys)
    lines = {v["line"] for v in report["violations"]}
    assert {2, 3} <= lines and not report["ok"]
    assert any(v["rule"] == "contract" for v in report["violations"])


def test_check_missing_file_is_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "nope.py")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_json_has_the_contracted_keys(good_file: Path, tiny_task: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(good_file), "--task", str(tiny_task), "--json", *EVAL_FLAGS]) == 0
    out = _json(capsys)
    assert {"status", "val_accuracy", "test_accuracy", "params", "flops", "train_seconds", "error"} <= set(out)
    assert out["status"] == "ok" and out["error"] is None and out["params"] > 0


def test_evaluate_failing_candidate_exits_1(tmp_path: Path, tiny_task: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "raises.py"
    path.write_text(CONCAT.replace("parts = []", "raise ValueError('no fusion today')"))
    assert main(["evaluate", str(path), "--task", str(tiny_task), "--json", *EVAL_FLAGS]) == 1
    out = _json(capsys)
    assert out["status"] == "rejected" and "no fusion today" in out["error"]


def test_baselines_train_the_zoo_under_the_protocol(tiny_task: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baselines", "--task", str(tiny_task), "--only", "concat", "gmu", "--json", *EVAL_FLAGS]) == 0
    rows = _json(capsys)
    assert set(rows) == {"concat", "gmu"}
    for row in rows.values():
        assert row["status"] == "ok" and 0 <= row["test_accuracy"] <= 1 and row["params"] > 0


def test_unknown_task_name_is_bad_input(good_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(good_file), "--task", "no-such-task"]) == 2
    assert "no-such-task" in capsys.readouterr().err


def test_tasks_lists_the_builtin_suite(capsys: pytest.CaptureFixture[str]) -> None:
    from autofusion.tasks.builtin import DEFAULT_TASK

    assert main(["tasks", "--json"]) == 0
    tasks = {t["name"]: t for t in _json(capsys)}
    assert DEFAULT_TASK in tasks
    assert any(t["kind"] == "real" for t in tasks.values())
    for t in tasks.values():
        assert t["num_classes"] >= 2 and t["sizes"]["train"] > 0 and t["modalities"]
