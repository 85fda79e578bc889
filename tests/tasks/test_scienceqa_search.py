"""A prepared ScienceQA task goes through `autofusion evaluate` and `search` with the category breakdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autofusion.cli import main
from autofusion.tasks.scienceqa.prepare import extract_task
from autofusion.tasks.scienceqa.problems import read_scienceqa


@pytest.fixture
def prepared(official_dir: Path, detr_encoder: Any, t5_encoder: Any, tmp_path: Path) -> Path:
    return extract_task(read_scienceqa(official_dir), tmp_path / "sqa", detr_encoder, t5_encoder, progress=False)


def test_evaluate_shows_the_scienceqa_breakdown(prepared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autofusion.zoo import zoo_path

    code = main(["evaluate", str(zoo_path("concat")), "--task", str(prepared), "--epochs", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    sqa = out["breakdown"]["scienceqa"]
    assert "all" in sqa and {"NAT", "SOC", "LAN"} & set(sqa)
    assert sqa["all"]["accuracy"] == pytest.approx(out["test_accuracy"])


def test_search_runs_on_the_prepared_task(prepared: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('zoo = ["concat", "cross_attention"]\nfinal_top_k = 1\nfinal_seeds = 1\n[train]\nepochs = 1\nthreads = 1\n')
    run = tmp_path / "run"
    assert main(["search", "--config", str(cfg), "--task", str(prepared), "--budget", "2", "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_candidates"] == 2 and summary["best"] is not None
    assert "NAT" in (run / "report.html").read_text() or "scienceqa" in (run / "report.html").read_text().lower()
