"""`autofusion search --final-train`: the winner and the best zoo member are fully trained at the end;
the results are in the store (purpose "full"), under final_train/, in summary.json and the report."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from autofusion.cli import main


@pytest.mark.slow
def test_search_with_final_train_records_weights_store_summary_and_report(tiny_task: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'task = "{tiny_task}"\nbudget = 1\nzoo = ["concat", "late"]\nfinal_top_k = 1\nfinal_seeds = 2\n'
                   'workers = 1\n[train]\nepochs = 1\nthreads = 1\ntimeout_s = 60\n')
    run = tmp_path / "run"
    assert main(["search", "--config", str(cfg), "--out", str(run), "--final-train", "--final-epochs", "2",
                 "--final-zoo", "1"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    final = summary["final_train"]
    assert len(final) == 2 and any(name.startswith("winner-") for name in final)
    db = sqlite3.connect(run / "run.db")
    for name, stats in final.items():
        rows = db.execute("SELECT seed, test_accuracy FROM evaluations WHERE purpose = 'full' AND candidate_id = ?"
                          " ORDER BY seed", (stats["candidate_id"],)).fetchall()
        assert [s for s, _ in rows] == [0, 1]
        assert stats["test_accuracy"] == pytest.approx(sum(t for _, t in rows) / 2)
        assert (run / stats["directory"] / stats["best_weights"]).is_file()
    page = (run / "report.html").read_text()
    assert 'id="table-full"' in page and page.count('id="fig-full_') == 2
