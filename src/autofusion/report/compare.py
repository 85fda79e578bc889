"""`write_comparison(run_dirs, out_dir) -> Path`: one report across several runs (controllers, seeds).

Best-so-far val accuracy vs. candidates generated, one line per run; a summary table with one row per
run; then each run's winner-vs-zoo table. Reads each run's store and summary.json; writes
`compare.html`, `compare.md` and `report_files/` under `out_dir`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from autofusion.errors import AutoFusionError
from autofusion.report import html, markdown
from autofusion.report import tables as T
from autofusion.report.data import ReportData, load_report_data
from autofusion.report.figures import best_so_far
from autofusion.report.run import _atomic_write, open_store, read_summary


def run_label(data: ReportData) -> str:
    cfg = data.config
    return f"{data.run_dir.name}: {cfg.get('controller')}/{cfg.get('generator')} seed {cfg.get('seed')}"


def load_runs(run_dirs: Sequence[str | Path]) -> list[ReportData]:
    if not run_dirs:
        raise AutoFusionError("autofusion compare needs at least one run directory")
    out = []
    for d in map(Path, run_dirs):
        summary = read_summary(d)
        store = open_store(d)
        try:
            out.append(load_report_data(d, store, summary))
        finally:
            store.close()
    return out


def summary_table(runs: list[ReportData]) -> T.Table:
    rows = []
    for d in runs:
        w = next((m for m in d.models if m.is_winner), None)
        zoo = max((m for m in d.models if m.role == "zoo" and m.val_accuracy is not None),
                  key=lambda m: m.val_accuracy or 0.0, default=None)
        best = max((v for _, v in d.best_so_far if v is not None), default=None)
        rows.append((T.Cell(run_label(d)), T.Cell(str(d.task.get("name"))), T.num(d.counts["n_candidates"]),
                     T.num(d.counts["n_evaluated"]), T.num(best), T.Cell(w.label if w else T.MISSING),
                     T.mean_std_cell(w.val_accuracy if w else None, w.val_accuracy_std if w else None),
                     T.mean_std_cell(w.test_accuracy if w else None, w.test_accuracy_std if w else None),
                     T.Cell(zoo.label if zoo else T.MISSING),
                     T.mean_std_cell(zoo.test_accuracy if zoo else None, zoo.test_accuracy_std if zoo else None),
                     T.num(d.run.get("wall_seconds"), 1)))
    return T.Table("runs", "Runs compared",
                   ("run", "task", "candidates", "trained", "best search val", "winner", "winner val", "winner test",
                    "best zoo (val)", "best zoo test", "wall s"), tuple(rows), tuple(str(d.run_dir) for d in runs),
                   note="Winner and zoo accuracies: mean ± std over each run's final seeds.")


def write_comparison(run_dirs: Sequence[str | Path], out_dir: str | Path) -> Path:
    runs = load_runs(run_dirs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, tuple[str, bytes]] = {}
    png = best_so_far([(run_label(d), d.best_so_far) for d in runs])
    if png is not None:
        figures["best_so_far"] = ("Best val accuracy so far vs. candidates generated, one line per run.", png)
    per_run = [(run_label(d), T.models_table(d)) for d in runs]
    paths = markdown.write_figures(figures, out)
    _atomic_write(out / "compare.md", _markdown(runs, figures, paths, per_run))
    body = ["<h1>AutoFusion: runs compared</h1>", html.section("Runs", html.table_html(summary_table(runs)))]
    if "best_so_far" in figures:
        body.append(html.section("Search progress", html.figure_html("best_so_far", *figures["best_so_far"])))
    for i, (label, table) in enumerate(per_run):
        body.append(html.section(label, html.table_html(_keyed(table, i))))
    path = out / "compare.html"
    _atomic_write(path, html.page("AutoFusion comparison", body))
    return path


def _keyed(table: T.Table, index: int) -> T.Table:
    return T.Table(f"models-{index}", table.title, table.headers, table.rows, table.row_keys, table.note)


def _markdown(runs: list[ReportData], figures: dict[str, Any], paths: dict[str, str], per_run: list[tuple[str, T.Table]]) -> str:
    out = ["# AutoFusion: runs compared", "", markdown.table_md(summary_table(runs))]
    if "best_so_far" in paths:
        out += [f"![{figures['best_so_far'][0]}]({paths['best_so_far']})", ""]
    for label, table in per_run:
        out += [f"## {label}", "", markdown.table_md(table)]
    return "\n".join(out)
