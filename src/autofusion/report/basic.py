"""A first, honest report: the summary's tables as HTML and Markdown, nothing invented.

Figures and the full experiment report are built by the richer report module when present.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from autofusion.store import SQLiteStore


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def comparison_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    best = summary.get("best")
    if best:
        rows.append([f"winner #{best['id']} ({best['origin']})", _acc(best, "val"), _acc(best, "test"),
                     _fmt(best.get("n_seeds")), _fmt(best.get("params")), _fmt(best.get("flops"))])
    for name, b in sorted(summary.get("baselines", {}).items(), key=lambda kv: -(kv[1]["val_accuracy"] or 0)):
        rows.append([f"zoo: {name}", _acc(b, "val"), _acc(b, "test"), _fmt(b.get("n_seeds")), _fmt(b.get("params")), _fmt(b.get("flops"))])
    return rows


def _acc(stats: dict[str, Any], split: str) -> str:
    mean, std = stats.get(f"{split}_accuracy"), stats.get(f"{split}_accuracy_std")
    if mean is None:
        return "—"
    return f"{mean:.4f} ± {std:.4f}" if std else f"{mean:.4f}"


HEADER = ["model", "val accuracy (mean ± std)", "test accuracy (mean ± std)", "seeds", "params", "FLOPs/sample"]


def write_report(run_dir: str | Path, store: SQLiteStore | None = None, summary: dict[str, Any] | None = None) -> Path:
    run_dir = Path(run_dir)
    if summary is None:
        summary = json.loads((run_dir / "summary.json").read_text())
    rows = comparison_rows(summary)
    best = summary.get("best") or {}
    code = (run_dir / "best_model.py").read_text() if (run_dir / "best_model.py").exists() else ""
    md = [f"# AutoFusion run on `{summary.get('task')}`", "",
          f"controller `{summary.get('controller')}`, generator `{summary.get('generator')}`, seed {summary.get('seed')}, "
          f"budget {summary.get('budget')}: {summary.get('n_candidates')} candidates, {summary.get('n_evaluated')} trained, "
          f"{summary.get('n_rejected')} rejected, {summary.get('n_failed')} failed; {summary.get('wall_seconds')} s.", "",
          "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    (run_dir / "report.md").write_text("\n".join(md) + "\n")
    table = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>AutoFusion report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:.2em .6em;border-bottom:1px solid #ddd}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head>
<body><h1>AutoFusion run on {html.escape(str(summary.get('task')))}</h1>
<p>{html.escape(md[2])}</p>
<h2>Winner vs. the zoo (same protocol, same seeds)</h2>
<table><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in HEADER)}</tr>{table}</table>
<h2>Winner's code (candidate #{html.escape(str(best.get('id')))})</h2><pre>{html.escape(code)}</pre>
</body></html>"""
    out = run_dir / "report.html"
    out.write_text(page)
    return out
