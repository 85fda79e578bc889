"""What a report shows, read from the run store alone: `load_report_data(run_dir, store, summary)`.

Every number a report prints or plots is taken here from `run.db` (candidates, evaluations,
llm_calls, meta) — never recomputed by training, never filled in when missing. `summary` is used only
for what the store does not hold: which candidate won (the search's selection, itself computed from
the store), the wall time, why the run stopped. Rendering lives in `html.py`, `markdown.py` and
`figures.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autofusion.evaluation.final import PURPOSE as FULL, mean_std
from autofusion.store import CandidateRow, SQLiteStore


@dataclass(frozen=True)
class ModelRow:
    """One line of the winner-vs-zoo table: seed statistics over the search + final evaluations."""

    candidate_id: int
    label: str
    role: str  # "winner", "zoo", "finalist" (a search candidate re-trained over seeds)
    status: str
    val_accuracy: float | None
    val_accuracy_std: float | None
    test_accuracy: float | None
    test_accuracy_std: float | None
    seeds: tuple[int, ...]
    params: int | None
    flops: int | None
    is_winner: bool = False


@dataclass(frozen=True)
class Point:
    """A trained candidate for the accuracy-vs-cost plots (search evaluation, base seed)."""

    candidate_id: int
    label: str
    is_zoo: bool
    val_accuracy: float
    params: int
    flops: int


@dataclass(frozen=True)
class FullRow:
    """Full training (`--final-train` / purpose "full") of one candidate, over seeds."""

    candidate_id: int
    label: str
    epochs: int
    seeds: tuple[int, ...]
    val_accuracy: float | None
    val_accuracy_std: float | None
    test_accuracy: float | None
    test_accuracy_std: float | None
    n_failed: int
    curves: dict[int, dict[str, list[float]]]  # seed -> curves


@dataclass(frozen=True)
class ReportData:
    run_dir: Path
    task: dict[str, Any]
    config: dict[str, Any]
    command: list[str] | None
    version: str | None
    base_seed: int
    counts: dict[str, int]
    run: dict[str, Any]  # wall_seconds, stopped_reason, complete (from summary.json)
    winner: CandidateRow | None
    models: list[ModelRow]
    lineage: list[CandidateRow]
    progress: list[tuple[int, str, float | None]]  # (proposal index, status, search val accuracy)
    curves: dict[str, dict[str, list[float]]]  # model label -> curves of its search evaluation
    points: list[Point]
    breakdown: dict[str, dict[str, dict[str, tuple[float, int, int]]]]  # field -> model -> value -> (acc, n, seeds)
    llm_totals: dict[str, Any]
    llm_by_model: list[dict[str, Any]]
    full: list[FullRow] = field(default_factory=list)

    @property
    def best_so_far(self) -> list[tuple[int, float | None]]:
        """(evaluations so far, best search val accuracy so far) after each proposal."""
        out, best = [], None
        for i, (_, _, val) in enumerate(self.progress, start=1):
            if val is not None and (best is None or val > best):
                best = val
            out.append((i, best))
        return out


def label_of(row: CandidateRow) -> str:
    return row.origin.split(":", 1)[1] if row.origin.startswith("zoo:") else f"#{row.id} ({row.origin})"


def load_report_data(run_dir: Path, store: SQLiteStore, summary: dict[str, Any]) -> ReportData:
    config = store.get_meta("config") or summary.get("config") or {}
    base_seed = int(config.get("seed", summary.get("seed", 0)))
    rows = store.candidates()
    best_id = (summary.get("best") or {}).get("id")
    winner = next((r for r in rows if r.id == best_id), None)
    proposals = [r for r in rows if r.proposal_index is not None]
    counts = {"n_candidates": len(proposals), "n_evaluated": sum(r.status == "ok" for r in proposals),
              "n_rejected": sum(r.status == "rejected" for r in proposals),
              "n_failed": sum(r.status in ("failed", "timeout") for r in proposals),
              "n_zoo": sum(r.is_seed for r in rows)}
    evals = store.evaluations()
    models = _models(rows, evals, winner, base_seed)
    shown = {m.candidate_id for m in models}
    return ReportData(
        run_dir=run_dir, task=store.get_meta("task") or {"name": store.get_meta("task_name")}, config=config,
        command=store.get_meta("command"), version=store.get_meta("version"), base_seed=base_seed, counts=counts,
        run={k: summary.get(k) for k in ("wall_seconds", "stopped_reason", "complete")},
        winner=winner, models=models, lineage=lineage(store, winner),
        progress=[(r.proposal_index, r.status, r.val_accuracy) for r in sorted(proposals, key=lambda r: r.proposal_index)],
        curves=_curves(rows, evals, shown, base_seed, winner),
        points=[Point(r.id, label_of(r), r.is_seed, r.val_accuracy, r.params, r.flops) for r in rows
                if r.status == "ok" and r.val_accuracy is not None and r.params is not None and r.flops is not None],
        breakdown=_breakdown(models, evals, base_seed), llm_totals=store.llm_totals(), llm_by_model=_llm_by_model(store),
        full=_full(rows, evals, winner),
    )


def _selection_evals(evals: list[dict[str, Any]], cid: int, base_seed: int) -> list[dict[str, Any]]:
    """The evaluations the search's final selection averages (outputs.seed_stats): ok, search at the
    base seed or final re-training."""
    return [e for e in evals if e["candidate_id"] == cid and e["status"] == "ok"
            and (e["purpose"] == "final" or (e["purpose"] == "search" and e["seed"] == base_seed))]


def _models(rows: list[CandidateRow], evals: list[dict[str, Any]], winner: CandidateRow | None,
            base_seed: int) -> list[ModelRow]:
    finalists = {e["candidate_id"] for e in evals if e["purpose"] == "final"}
    out = []
    for r in rows:
        if not (r.is_seed or r.id in finalists or (winner is not None and r.id == winner.id)):
            continue
        chosen = _selection_evals(evals, r.id, base_seed)
        val, val_std = mean_std([e["val_accuracy"] for e in chosen])
        test, test_std = mean_std([e["test_accuracy"] for e in chosen])
        is_winner = winner is not None and r.id == winner.id
        role = "winner" if is_winner else "zoo" if r.is_seed else "finalist"
        out.append(ModelRow(r.id, label_of(r), role, r.status, val, val_std, test, test_std,
                            tuple(sorted(e["seed"] for e in chosen)), r.params, r.flops, is_winner))
    order = {"winner": 0, "zoo": 1, "finalist": 2}
    return sorted(out, key=lambda m: (order[m.role], -(m.val_accuracy if m.val_accuracy is not None else -1.0), m.candidate_id))


def lineage(store: SQLiteStore, winner: CandidateRow | None) -> list[CandidateRow]:
    """The winner and all its ancestors (parents, their parents, ... down to the zoo seeds)."""
    if winner is None:
        return []
    seen: dict[int, CandidateRow] = {}
    todo = [winner.id]
    while todo:
        cid = todo.pop()
        if cid in seen:
            continue
        try:
            seen[cid] = store.candidate(cid)
        except KeyError:
            continue
        todo.extend(seen[cid].parent_ids)
    return sorted(seen.values(), key=lambda r: r.id, reverse=True)


def _curves(rows: list[CandidateRow], evals: list[dict[str, Any]], shown: set[int], base_seed: int,
            winner: CandidateRow | None) -> dict[str, dict[str, list[float]]]:
    """Per-epoch curves of the search evaluation (base seed) of the winner and the zoo; measured or absent."""
    out = {}
    by_id = {r.id: r for r in rows}
    for e in evals:
        if e["candidate_id"] in shown and e["purpose"] == "search" and e["seed"] == base_seed and e["curves"]:
            row = by_id[e["candidate_id"]]
            if row.is_seed or (winner is not None and row.id == winner.id):
                name = ("winner " if winner is not None and row.id == winner.id else "") + label_of(row)
                if e["curves"].get("val_accuracy"):
                    out[name] = e["curves"]
    return out


def _breakdown(models: list[ModelRow], evals: list[dict[str, Any]], base_seed: int
               ) -> dict[str, dict[str, dict[str, tuple[float, int, int]]]]:
    """Per-category test accuracy (mean over the same evaluations as the table), when recorded."""
    out: dict[str, dict[str, dict[str, tuple[float, int, int]]]] = {}
    for m in models:
        chosen = [e for e in _selection_evals(evals, m.candidate_id, base_seed) if e["breakdown"]]
        for fld in sorted({f for e in chosen for f in e["breakdown"]}):
            values: dict[str, list[tuple[float, int]]] = {}
            for e in chosen:
                for value, cell in (e["breakdown"].get(fld) or {}).items():
                    if isinstance(cell, dict) and "accuracy" in cell:
                        values.setdefault(str(value), []).append((float(cell["accuracy"]), int(cell.get("n", 0))))
            if len(values) < 2:  # a single category ("all") repeats the table above
                continue
            out.setdefault(fld, {})[m.label] = {
                v: (sum(a for a, _ in cells) / len(cells), cells[0][1], len(cells)) for v, cells in sorted(values.items())}
    return out


def _llm_by_model(store: SQLiteStore) -> list[dict[str, Any]]:
    rows = store.db.execute(
        "SELECT provider, model, COUNT(*) AS calls, COALESCE(SUM(cached), 0) AS cached,"
        " COALESCE(SUM(error IS NOT NULL), 0) AS errors,"
        " COALESCE(SUM(CASE WHEN cached = 0 THEN input_tokens END), 0) AS input_tokens,"
        " COALESCE(SUM(CASE WHEN cached = 0 THEN output_tokens END), 0) AS output_tokens,"
        " AVG(CASE WHEN cached = 0 THEN latency_s END) AS mean_latency_s,"
        " COALESCE(SUM(CASE WHEN cached = 0 THEN cost_usd END), 0) AS cost_usd"
        " FROM llm_calls GROUP BY provider, model ORDER BY provider, model").fetchall()
    return [dict(r) for r in rows]


def _full(rows: list[CandidateRow], evals: list[dict[str, Any]], winner: CandidateRow | None) -> list[FullRow]:
    by_id = {r.id: r for r in rows}
    out = []
    for cid in sorted({e["candidate_id"] for e in evals if e["purpose"] == FULL}):
        runs = [e for e in evals if e["candidate_id"] == cid and e["purpose"] == FULL]
        ok = [e for e in runs if e["status"] == "ok"]
        val, val_std = mean_std([e["val_accuracy"] for e in ok])
        test, test_std = mean_std([e["test_accuracy"] for e in ok])
        label = ("winner " if winner is not None and cid == winner.id else "") + label_of(by_id[cid])
        epochs = max(((e["fidelity"] or {}).get("epochs") or 0) for e in runs)
        out.append(FullRow(cid, label, int(epochs), tuple(sorted(e["seed"] for e in ok)), val, val_std, test, test_std,
                           len(runs) - len(ok), {e["seed"]: e["curves"] for e in ok if e["curves"]}))
    return out


def config_json(data: ReportData) -> str:
    return json.dumps(data.config, indent=2, sort_keys=True)
