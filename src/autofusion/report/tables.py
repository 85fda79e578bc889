"""The report's tables, as plain data both the HTML and the Markdown renderers print.

A cell carries its display text and the raw number it shows (the HTML puts the raw value in a
`data-value` attribute, so a test or a reader can check every number against the run store).
Values are formatted, never changed: a missing measurement shows as "—".
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from autofusion.report.data import ReportData

MISSING = "—"


@dataclass(frozen=True)
class Cell:
    text: str
    value: Any = None  # the raw number, when the cell shows one
    std: float | None = None  # its standard deviation over seeds, when shown


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    row_keys: tuple[str, ...]  # e.g. the candidate id of each row
    note: str = ""


def num(value: float | int | None, digits: int = 4) -> Cell:
    if value is None:
        return Cell(MISSING)
    if isinstance(value, int) and not isinstance(value, bool):
        return Cell(f"{value:,}", value)
    return Cell(f"{value:.{digits}f}", value)


def mean_std_cell(mean: float | None, std: float | None) -> Cell:
    if mean is None:
        return Cell(MISSING)
    return Cell(f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}", mean, std)


def models_table(data: ReportData) -> Table:
    rows = []
    for m in data.models:
        name = f"{m.label} (#{m.candidate_id})" if m.role == "zoo" else m.label
        role = "winner" + (" (zoo member)" if data.winner is not None and data.winner.is_seed else "") if m.is_winner else m.role
        rows.append((Cell(name), Cell(role), Cell(m.status), mean_std_cell(m.val_accuracy, m.val_accuracy_std),
                     mean_std_cell(m.test_accuracy, m.test_accuracy_std), Cell(", ".join(map(str, m.seeds)) or MISSING, len(m.seeds)), num(m.params), num(m.flops)))
    return Table("models", "Winner vs. the zoo (same trainer, same seeds)",
                 ("model", "role", "status", "val accuracy (mean ± std)", "test accuracy (mean ± std)", "seeds", "params", "FLOPs/sample"),
                 tuple(rows), tuple(str(m.candidate_id) for m in data.models),
                 note="Mean ± sample std over the search evaluation and the final re-trainings (proxy training, "
                      f"{(data.config.get('train') or {}).get('epochs', '?')} epochs). The winner is chosen by mean val "
                      "accuracy; test accuracy is reported, never used for selection.")


def lineage_table(data: ReportData) -> Table:
    rows = []
    for r in data.lineage:
        action = r.action or {}
        rows.append((Cell(f"#{r.id}"), Cell(r.origin), Cell(", ".join(f"#{p}" for p in r.parent_ids) or MISSING),
                     Cell(action.get("operator") or MISSING), Cell(action.get("family") or MISSING),
                     num(r.val_accuracy), num(r.params), Cell(r.notes or "")))
    return Table("lineage", "Lineage of the winner (newest first)",
                 ("candidate", "origin", "parents", "operator", "family", "val accuracy (search)", "params", "notes"),
                 tuple(rows), tuple(str(r.id) for r in data.lineage))


def breakdown_tables(data: ReportData) -> list[Table]:
    out = []
    for fld, table in data.breakdown.items():
        values = sorted({v for cells in table.values() for v in cells})
        rows = []
        for model, cells in table.items():
            rows.append((Cell(model), *(num(cells[v][0]) if v in cells else Cell(MISSING) for v in values)))
        sizes = {v: next(c[v][1] for c in table.values() if v in c) for v in values}
        out.append(Table(f"breakdown-{fld}", f"Test accuracy by {fld}",
                         ("model", *(f"{v} (n={sizes[v]})" for v in values)), tuple(rows), tuple(table),
                         note="Mean over the same seeds as the main table."))
    return out


def llm_table(data: ReportData) -> Table | None:
    if not data.llm_by_model:
        return None
    rows = tuple((Cell(r["provider"] or MISSING), Cell(r["model"] or MISSING), num(r["calls"]), num(r["cached"]),
                  num(r["errors"]), num(r["input_tokens"]), num(r["output_tokens"]), num(r["mean_latency_s"], 2),
                  num(r["cost_usd"], 4)) for r in data.llm_by_model)
    t = data.llm_totals
    return Table("llm", "LLM calls and tokens",
                 ("provider", "model", "calls", "cached", "errors", "input tokens (paid)", "output tokens (paid)",
                  "mean latency (s)", "cost (USD)"), rows, tuple(f"{r['provider']}/{r['model']}" for r in data.llm_by_model),
                 note=f"Paid calls: {t['calls']:,}; input tokens {t['input_tokens']:,}, output tokens {t['output_tokens']:,}; "
                      f"cache hits {t['cached_calls']:,}; cost {t['cost_usd']:.4f} USD.")


def full_table(data: ReportData) -> Table | None:
    if not data.full:
        return None
    rows = tuple((Cell(f.label), num(f.epochs), Cell(", ".join(map(str, f.seeds)) or MISSING, len(f.seeds)),
                  mean_std_cell(f.val_accuracy, f.val_accuracy_std), mean_std_cell(f.test_accuracy, f.test_accuracy_std),
                  num(f.n_failed)) for f in data.full)
    return Table("full", "Full training (cosine schedule with warm-up, best-val checkpoint)",
                 ("model", "epochs", "seeds", "val accuracy (mean ± std)", "test accuracy (mean ± std)", "failed seeds"),
                 rows, tuple(str(f.candidate_id) for f in data.full),
                 note="Weights (safetensors), code, curves: final_train/<model>/ in the run directory.")


def run_facts(data: ReportData) -> list[tuple[str, str]]:
    task = data.task
    mods = ", ".join(f"{m} {list((s or {}).get('shape', []))}" for m, s in (task.get("modalities") or {}).items())
    c, cfg = data.counts, data.config
    wall = data.run.get("wall_seconds")
    return [
        ("task", f"{task.get('name')} — {task.get('num_classes')} classes; modalities: {mods or MISSING}"),
        ("task directory", str(cfg.get("task", MISSING))),
        ("search", f"controller {cfg.get('controller')}, generator {cfg.get('generator')}, seed {cfg.get('seed')}, "
                   f"budget {cfg.get('budget')}"),
        ("candidates", f"{c['n_candidates']} generated: {c['n_evaluated']} trained, {c['n_rejected']} rejected, "
                       f"{c['n_failed']} failed or timed out; {c['n_zoo']} zoo members as baselines"),
        ("wall time", f"{wall:.1f} s" if isinstance(wall, (int, float)) else MISSING),
        ("stopped", str(data.run.get("stopped_reason") or "budget spent")),
        ("version", f"autofusion {data.version or MISSING}"),
    ]


def command_line(data: ReportData) -> str:
    if data.command:
        return shlex.join(str(a) for a in data.command)
    return "autofusion search --config config.json   # the original command was not recorded"
