"""`report.md`: the same tables as the HTML report in Markdown, figures as PNG files next to it.

Meant for pasting into a paper draft or an issue. The PNGs go to `report_files/` beside the file and
are linked relatively.
"""

from __future__ import annotations

from pathlib import Path

from autofusion.report import tables as T
from autofusion.report.data import ReportData

FIGURE_DIR = "report_files"


def table_md(t: T.Table) -> str:
    def clean(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"**{t.title}**", "", "| " + " | ".join(map(clean, t.headers)) + " |", "|" + "---|" * len(t.headers)]
    lines += ["| " + " | ".join(clean(c.text) for c in row) + " |" for row in t.rows]
    if t.note:
        lines += ["", f"_{t.note}_"]
    return "\n".join(lines) + "\n"


def write_figures(figures: dict[str, tuple[str, bytes]], out_dir: Path) -> dict[str, str]:
    """Write every PNG; name -> relative path."""
    folder = out_dir / FIGURE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (_, png) in figures.items():
        (folder / f"{name}.png").write_bytes(png)
        paths[name] = f"{FIGURE_DIR}/{name}.png"
    return paths


def render_run(data: ReportData, figures: dict[str, tuple[str, bytes]], paths: dict[str, str]) -> str:
    def fig(name: str) -> str:
        return f"![{figures[name][0]}]({paths[name]})\n\n*{figures[name][0]}*\n" if name in paths else ""

    out = [f"# AutoFusion run on `{data.task.get('name')}`", ""]
    out += [f"- **{k}**: {v}" for k, v in T.run_facts(data)] + [""]
    out += ["## Winner vs. the zoo", "", table_md(T.models_table(data))]
    full = T.full_table(data)
    if full is not None:
        out += ["## Full training", "", table_md(full), *(fig(n) for n in figures if n.startswith("full_"))]
    out += ["## Search progress", "", fig("best_so_far") or "_no candidate finished training_\n"]
    out += ["## Training curves", "", fig("curves") or "_no curves were recorded_\n"]
    out += ["## Accuracy vs. cost", "", fig("acc_params"), fig("acc_flops")]
    if data.breakdown:
        out += ["## Per-category accuracy", ""]
        for t in T.breakdown_tables(data):
            out += [table_md(t), fig(f"breakdown_{t.key[10:]}")]
    if data.winner is not None:
        out += [f"## Winner: candidate #{data.winner.id} ({data.winner.origin})", "",
                "The code is in `best_model.py`.", "", table_md(T.lineage_table(data))]
    llm = T.llm_table(data)
    if llm is not None:
        out += ["## LLM usage", "", table_md(llm)]
    out += ["## Reproduce", "", "```sh", T.command_line(data), "```", ""]
    return "\n".join(out)
