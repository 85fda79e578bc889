"""`write_report(run_dir, store=None, summary=None) -> Path`: one run's `report.html` and `report.md`.

Called by `outputs.write_outputs` before summary.json exists (it passes `summary`), and by
`autofusion report RUN_DIR` afterwards (summary.json is read). Numbers come from the run store
(`data.py`); nothing is trained or recomputed here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from autofusion.errors import AutoFusionError
from autofusion.report import html, markdown
from autofusion.report.data import load_report_data
from autofusion.report.figures import report_figures
from autofusion.store import SQLiteStore


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if not path.is_file():
        raise AutoFusionError(f"{run_dir} has no summary.json: the run did not finish; resume it with "
                              f"`autofusion search --resume {run_dir}`")
    return json.loads(path.read_text())


def open_store(run_dir: Path) -> SQLiteStore:
    if not (run_dir / "run.db").is_file():
        raise AutoFusionError(f"{run_dir} is not a run directory (no run.db); pass the --out directory of a search")
    return SQLiteStore(run_dir / "run.db")


def write_report(run_dir: str | Path, store: SQLiteStore | None = None, summary: dict[str, Any] | None = None) -> Path:
    run_dir = Path(run_dir)
    own_store = store is None
    store = store or open_store(run_dir)
    try:
        summary = summary if summary is not None else read_summary(run_dir)
        data = load_report_data(run_dir, store, summary)
    finally:
        if own_store:
            store.close()
    figures = report_figures(data)
    code_path = run_dir / "best_model.py"
    code = code_path.read_text(encoding="utf-8") if code_path.is_file() else ""
    paths = markdown.write_figures(figures, run_dir)
    _atomic_write(run_dir / "report.md", markdown.render_run(data, figures, paths))
    out = run_dir / "report.html"
    _atomic_write(out, html.render_run(data, figures, code))
    return out
