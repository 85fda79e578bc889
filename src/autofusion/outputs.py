"""The run directory's files, computed from the run store alone (DESIGN §4).

`best_model.py` (the winner's code, importable with torch alone), `leaderboard.csv`, `config.json`,
`report.html` + `report.md`, and `summary.json` (with the Pareto fronts of val accuracy vs params and
vs FLOPs over every successfully evaluated candidate) — written last, so its presence means the run
finished. Every number comes from the store; nothing is recomputed or invented here.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from autofusion import __version__
from autofusion.config import SearchConfig
from autofusion.controllers.objective import Objective, pareto_fronts
from autofusion.store import CandidateRow, SQLiteStore

log = logging.getLogger(__name__)


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def seed_stats(store: SQLiteStore, row: CandidateRow, base_seed: int) -> dict[str, Any]:
    """Mean and std of val/test accuracy over the search evaluation and the final re-trainings."""
    evals = [e for e in store.evaluations(row.id) if e["status"] == "ok"
             and (e["purpose"] == "final" or (e["purpose"] == "search" and e["seed"] == base_seed))]
    val_mean, val_std = _mean_std([e["val_accuracy"] for e in evals])
    test_mean, test_std = _mean_std([e["test_accuracy"] for e in evals])
    return {"val_accuracy": val_mean, "val_accuracy_std": val_std, "test_accuracy": test_mean,
            "test_accuracy_std": test_std, "n_seeds": len(evals), "seeds": sorted(e["seed"] for e in evals),
            "params": row.params, "flops": row.flops}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def best_model_source(row: CandidateRow, stats: dict[str, Any], task: str) -> str:
    header = (
        f"# AutoFusion winner on task {task!r}: candidate #{row.id} ({row.origin}).\n"
        f"# Mean val accuracy {stats['val_accuracy']:.4f} over {stats['n_seeds']} seed(s); "
        f"mean test accuracy {stats['test_accuracy']:.4f}.\n"
        "# Standalone: needs torch only. Build with FusionModel(input_shapes, num_classes).\n"
    )
    return header + row.code if not row.code.startswith("#!") else row.code


def write_leaderboard(store: SQLiteStore, path: Path) -> None:
    rows = sorted(store.candidates(), key=lambda r: (-(r.val_accuracy or -1.0), r.id))
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "origin", "status", "val_accuracy", "params", "flops", "parents", "operator", "family", "stage", "error"])
        for r in rows:
            error = (r.error or "").strip().splitlines()
            w.writerow([r.id, r.origin, r.status, r.val_accuracy, r.params, r.flops, " ".join(map(str, r.parent_ids)),
                        (r.action or {}).get("operator"), (r.action or {}).get("family"), r.stage, error[-1][:200] if error else ""])
    os.replace(tmp, path)


def build_summary(store: SQLiteStore, config: SearchConfig, winner: CandidateRow | None, wall_seconds: float,
                  stopped_reason: str | None) -> dict[str, Any]:
    proposals = store.candidates("proposal_index IS NOT NULL")
    count = lambda *statuses: sum(1 for r in proposals if r.status in statuses)  # noqa: E731
    baselines = {r.origin.split(":", 1)[1]: seed_stats(store, r, config.seed)
                 for r in store.candidates("origin LIKE 'zoo:%'") if r.status == "ok"}
    best = None
    if winner is not None:
        best = {"id": winner.id, "origin": winner.origin, **seed_stats(store, winner, config.seed),
                "search_val_accuracy": winner.val_accuracy, "file": "best_model.py"}
    evaluated = store.candidates("status = 'ok'")
    best_zoo = max(baselines.items(), key=lambda kv: kv[1]["val_accuracy"] or 0.0)[0] if baselines else None
    return {
        "task": store.get_meta("task_name"), "task_dir": store.get_meta("task_dir"),
        "controller": config.controller, "generator": config.generator, "seed": config.seed, "budget": config.budget,
        "n_candidates": len(proposals), "n_evaluated": count("ok"), "n_rejected": count("rejected"),
        "n_failed": count("failed", "timeout"), "n_timeout": count("timeout"),
        "wall_seconds": round(wall_seconds, 2), "best": best, "baselines": baselines,
        "best_zoo": best_zoo, "winner_is_zoo": bool(winner and winner.is_seed),
        "selection": ("mean val accuracy over the final seeds; a search candidate replaces the best zoo member "
                      "only when ahead by more than one standard error of the difference; test never used"),
        "llm": store.llm_totals(), "stopped_reason": stopped_reason,
        "objective": Objective.from_dict(config.objective).to_dict(),
        "pareto": pareto_fronts(evaluated, {r.id: r.origin for r in evaluated}),
        "version": __version__, "config": config.to_dict(), "complete": True,
    }


def write_outputs(store: SQLiteStore, run_dir: Path, config: SearchConfig, winner: CandidateRow | None,
                  wall_seconds: float, stopped_reason: str | None) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = build_summary(store, config, winner, wall_seconds, stopped_reason)
    if winner is not None and summary["best"]["val_accuracy"] is not None:
        _atomic_write(run_dir / "best_model.py", best_model_source(winner, summary["best"], summary["task"]))
    write_leaderboard(store, run_dir / "leaderboard.csv")
    _atomic_write(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    try:
        from autofusion.report import write_report

        write_report(run_dir, store=store, summary=summary)
    except Exception as exc:  # noqa: BLE001 - a report failure must not cost the run its summary
        log.error("could not write the report: %s (rebuild with `autofusion report %s`)", exc, run_dir)
        summary["report_error"] = str(exc)
    _atomic_write(run_dir / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary
