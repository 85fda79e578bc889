"""The run store: one SQLite file (`run.db`) from which a search can be resumed and replayed.

It holds the resolved config and package version, every candidate (code, origin, parents, the
action that produced it, gate verdict, status, error), every evaluation (purpose, fidelity, seed,
metrics, curves, durations), every LLM call, and the controller's state. Each finished evaluation is
committed together with its candidate's status and the controller state in one transaction, so a
process killed at any moment (even SIGKILL) leaves a consistent store: a finished evaluation is
never lost, an unfinished one is simply `pending` and is run again on resume.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autofusion.evaluation.protocol import EvalResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    proposal_index INTEGER,          -- n-th proposal of the search (NULL for zoo seeds)
    origin TEXT NOT NULL,            -- zoo:<name>, synth, llm:<model>, file:<path>
    parent_ids TEXT NOT NULL,        -- JSON list
    action TEXT,                     -- JSON {"operator", "family"} or NULL
    code TEXT NOT NULL,
    code_hash TEXT NOT NULL,         -- normalised-code hash for duplicate detection
    genome TEXT,                     -- JSON genome for synthesizer-made candidates
    notes TEXT,
    gate TEXT,                       -- "pass" or the violations
    status TEXT NOT NULL,            -- pending | ok | rejected | failed | timeout
    stage TEXT,                      -- where a rejected/failed candidate stopped
    error TEXT,
    val_accuracy REAL, test_accuracy REAL, params INTEGER, flops INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS candidates_proposal ON candidates(proposal_index);
CREATE INDEX IF NOT EXISTS candidates_hash ON candidates(code_hash);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY,
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    created REAL NOT NULL,
    purpose TEXT NOT NULL,           -- search | final | rung | full
    seed INTEGER NOT NULL,
    fidelity TEXT NOT NULL,          -- JSON {"epochs", "data_fraction"}
    status TEXT NOT NULL,
    val_accuracy REAL, test_accuracy REAL, params INTEGER, flops INTEGER,
    train_seconds REAL, wall_seconds REAL, best_epoch INTEGER, epochs_run INTEGER,
    stage TEXT, error TEXT,
    curves TEXT,                     -- JSON Curves
    breakdown TEXT,                  -- JSON per-category accuracy (test), when the task has metadata
    settings TEXT                    -- JSON TrainSettings used
);
CREATE INDEX IF NOT EXISTS evaluations_candidate ON evaluations(candidate_id, purpose, seed);
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    candidate_index INTEGER,         -- proposal index the call was made for
    key TEXT, provider TEXT, model TEXT, prompt_hash TEXT,
    messages TEXT, reply TEXT, finish_reason TEXT,
    input_tokens INTEGER, output_tokens INTEGER, latency_s REAL,
    error TEXT, cached INTEGER, attempt INTEGER, cost_usd REAL
);
CREATE INDEX IF NOT EXISTS llm_calls_key ON llm_calls(key);
CREATE TABLE IF NOT EXISTS controller_state (
    id INTEGER PRIMARY KEY, created REAL NOT NULL, name TEXT NOT NULL, n_observed INTEGER, state TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class CandidateRow:
    id: int
    proposal_index: int | None
    origin: str
    parent_ids: tuple[int, ...]
    action: dict[str, Any] | None
    code: str
    code_hash: str
    genome: dict[str, Any] | None
    notes: str
    gate: str | None
    status: str
    stage: str | None
    error: str | None
    val_accuracy: float | None
    test_accuracy: float | None
    params: int | None
    flops: int | None
    created: float

    @property
    def is_seed(self) -> bool:
        return self.proposal_index is None


def _safe(params: tuple[Any, ...]) -> tuple[Any, ...]:
    """Text as SQLite can store it: a lone surrogate (possible in an LLM's or a candidate's output)
    would otherwise raise UnicodeEncodeError and lose the whole row."""
    return tuple(p.encode("utf-8", "replace").decode("utf-8") if isinstance(p, str) else p for p in params)


def _loads(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)


class SQLiteStore:
    """All persistent state of one run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL+NORMAL survives a killed process
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def transaction(self) -> "_Tx":
        return _Tx(self.db)

    # ---------------------------------------------------------------------------------- meta

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    # ---------------------------------------------------------------------------- candidates

    def add_candidate(self, *, origin: str, code: str, code_hash: str, proposal_index: int | None = None,
                      parent_ids: tuple[int, ...] = (), action: dict[str, Any] | None = None,
                      genome: dict[str, Any] | None = None, notes: str = "", gate: str | None = None,
                      status: str = "pending", stage: str | None = None, error: str | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO candidates (created, proposal_index, origin, parent_ids, action, code, code_hash, genome,"
            " notes, gate, status, stage, error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            _safe((time.time(), proposal_index, origin, json.dumps(list(parent_ids)), json.dumps(action) if action else None,
             code, code_hash, json.dumps(genome) if genome is not None else None, notes, gate, status, stage, error)))
        return int(cur.lastrowid)

    def set_status(self, candidate_id: int, status: str, stage: str | None = None, error: str | None = None,
                   result: EvalResult | None = None) -> None:
        fields = {"status": status, "stage": stage, "error": error}
        if result is not None:
            fields.update(val_accuracy=result.val_accuracy, test_accuracy=result.test_accuracy,
                          params=result.params, flops=result.flops)
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(f"UPDATE candidates SET {sets} WHERE id = ?", _safe((*fields.values(), candidate_id)))

    def candidate(self, candidate_id: int) -> CandidateRow:
        row = self.db.execute("SELECT * FROM candidates WHERE id = ?", (candidate_id,)).fetchone()
        if row is None:
            raise KeyError(candidate_id)
        return self._row(row)

    def candidates(self, where: str = "1", params: tuple[Any, ...] = ()) -> list[CandidateRow]:
        rows = self.db.execute(f"SELECT * FROM candidates WHERE {where} ORDER BY id", params).fetchall()
        return [self._row(r) for r in rows]

    def candidate_by_proposal(self, index: int) -> CandidateRow | None:
        found = self.candidates("proposal_index = ?", (index,))
        return found[0] if found else None

    def find_by_hash(self, code_hash: str) -> CandidateRow | None:
        found = self.candidates("code_hash = ?", (code_hash,))
        return found[0] if found else None

    def n_proposals(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM candidates WHERE proposal_index IS NOT NULL").fetchone()[0])

    @staticmethod
    def _row(r: sqlite3.Row) -> CandidateRow:
        return CandidateRow(
            id=r["id"], proposal_index=r["proposal_index"], origin=r["origin"],
            parent_ids=tuple(json.loads(r["parent_ids"])), action=_loads(r["action"]), code=r["code"],
            code_hash=r["code_hash"], genome=_loads(r["genome"]), notes=r["notes"] or "", gate=r["gate"],
            status=r["status"], stage=r["stage"], error=r["error"], val_accuracy=r["val_accuracy"],
            test_accuracy=r["test_accuracy"], params=r["params"], flops=r["flops"], created=r["created"])

    # --------------------------------------------------------------------------- evaluations

    def add_evaluation(self, candidate_id: int, purpose: str, result: EvalResult) -> int:
        s = result.settings
        cur = self.db.execute(
            "INSERT INTO evaluations (candidate_id, created, purpose, seed, fidelity, status, val_accuracy,"
            " test_accuracy, params, flops, train_seconds, wall_seconds, best_epoch, epochs_run, stage, error,"
            " curves, breakdown, settings) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            _safe((candidate_id, time.time(), purpose, s.seed,
             json.dumps({"epochs": s.epochs, "data_fraction": s.data_fraction}), result.status.value,
             result.val_accuracy, result.test_accuracy, result.params, result.flops, result.train_seconds,
             result.wall_seconds, result.best_epoch, result.epochs_run, result.stage, result.error,
             json.dumps(result.to_json()["curves"]), json.dumps(result.breakdown) if result.breakdown else None,
             json.dumps(s.to_dict()))))
        return int(cur.lastrowid)

    def evaluations(self, candidate_id: int | None = None, purpose: str | None = None) -> list[dict[str, Any]]:
        clauses, params = [], []
        if candidate_id is not None:
            clauses.append("candidate_id = ?")
            params.append(candidate_id)
        if purpose is not None:
            clauses.append("purpose = ?")
            params.append(purpose)
        where = " AND ".join(clauses) or "1"
        rows = self.db.execute(f"SELECT * FROM evaluations WHERE {where} ORDER BY id", params).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            for key in ("fidelity", "curves", "breakdown", "settings"):
                d[key] = _loads(d[key])
            out.append(d)
        return out

    def has_evaluation(self, candidate_id: int, purpose: str, seed: int, fidelity: dict[str, Any] | None = None) -> bool:
        for e in self.evaluations(candidate_id, purpose):
            if e["seed"] == seed and (fidelity is None or e["fidelity"] == fidelity):
                return True
        return False

    # ---------------------------------------------------------------------------- controller

    def save_controller_state(self, name: str, n_observed: int, state: dict[str, Any]) -> None:
        self.db.execute("INSERT INTO controller_state (created, name, n_observed, state) VALUES (?,?,?,?)",
                        (time.time(), name, n_observed, json.dumps(state)))

    def latest_controller_state(self, name: str) -> tuple[int, dict[str, Any]] | None:
        row = self.db.execute("SELECT n_observed, state FROM controller_state WHERE name = ? ORDER BY id DESC LIMIT 1",
                              (name,)).fetchone()
        return None if row is None else (int(row["n_observed"]), json.loads(row["state"]))

    # ----------------------------------------------------------------------------------- llm

    def record_llm_call(self, **fields: Any) -> None:
        fields.setdefault("created", time.time())
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        self.db.execute(f"INSERT INTO llm_calls ({cols}) VALUES ({marks})", _safe(tuple(fields.values())))

    def llm_calls(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM llm_calls ORDER BY id").fetchall()]

    def llm_totals(self) -> dict[str, Any]:
        r = self.db.execute(
            "SELECT COALESCE(SUM(cached = 0), 0) AS calls,"
            " COALESCE(SUM(CASE WHEN cached = 0 THEN input_tokens END), 0) AS inp,"
            " COALESCE(SUM(CASE WHEN cached = 0 THEN output_tokens END), 0) AS outp,"
            " COALESCE(SUM(CASE WHEN cached = 0 THEN cost_usd END), 0) AS cost,"
            " COALESCE(SUM(cached), 0) AS cached FROM llm_calls").fetchone()
        # Paid calls only: a reply served from the cache cost nothing and is counted apart.
        return {"calls": r["calls"], "input_tokens": r["inp"], "output_tokens": r["outp"],
                "cached_calls": r["cached"], "cost_usd": round(r["cost"], 6)}


class _Tx:
    """`with store.transaction():` — everything inside commits together or not at all."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")

