"""Every number in the report is the run store's: tables parsed from report.html, checked against SQL."""

from __future__ import annotations

import sqlite3
import statistics
from html.parser import HTMLParser
from pathlib import Path


class Tables(HTMLParser):
    """table id -> row key -> list of (data-value, data-std, text) per cell."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, list[tuple[str | None, str | None, str]]]] = {}
        self.table = self.row = None
        self.cell: dict[str, str | None] | None = None
        self.text = ""
        self.imgs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.table = a.get("id")
            self.tables[self.table] = {}
        elif tag == "tr" and "data-key" in a:
            self.row = a["data-key"]
            self.tables[self.table][self.row] = []
        elif tag == "td" and self.row is not None:
            self.cell, self.text = a, ""
        elif tag == "img":
            self.imgs.append(a.get("src") or "")

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None:
            self.tables[self.table][self.row].append((self.cell.get("data-value"), self.cell.get("data-std"), self.text))
            self.cell = None
        elif tag == "tr":
            self.row = None


def parse(path: Path) -> Tables:
    t = Tables()
    t.feed(path.read_text())
    return t


def selection_evals(db: sqlite3.Connection, cid: int) -> list[tuple[float, float, int]]:
    return db.execute("SELECT val_accuracy, test_accuracy, seed FROM evaluations WHERE candidate_id = ? AND status = 'ok'"
                      " AND (purpose = 'final' OR (purpose = 'search' AND seed = 0))", (cid,)).fetchall()


def test_winner_and_zoo_table_matches_the_store(fake_run: Path) -> None:
    db = sqlite3.connect(fake_run / "run.db")
    table = parse(fake_run / "report.html").tables["table-models"]
    zoo = [cid for cid, in db.execute("SELECT id FROM candidates WHERE origin LIKE 'zoo:%'")]
    finalists = [cid for cid, in db.execute("SELECT DISTINCT candidate_id FROM evaluations WHERE purpose = 'final'")]
    assert set(table) == {str(c) for c in set(zoo) | set(finalists)}
    for key, cells in table.items():
        evals = selection_evals(db, int(key))
        vals, tests = [e[0] for e in evals], [e[1] for e in evals]
        params, flops = db.execute("SELECT params, flops FROM candidates WHERE id = ?", (int(key),)).fetchone()
        (val, val_std, _), (test, test_std, _) = cells[3], cells[4]
        assert float(val) == statistics.mean(vals) and float(val_std) == statistics.stdev(vals)
        assert float(test) == statistics.mean(tests) and float(test_std) == statistics.stdev(tests)
        assert cells[5][2] == ", ".join(str(s) for s in sorted(e[2] for e in evals))
        assert int(cells[6][0]) == params and int(cells[7][0]) == flops
    winner = [k for k, cells in table.items() if cells[1][2].startswith("winner")]
    means = {k: float(cells[3][0]) for k, cells in table.items()}
    assert winner == [max(means, key=means.get)]  # selection by mean val, as the store says


def test_lineage_follows_parent_ids_from_the_store(fake_run: Path) -> None:
    import json

    db = sqlite3.connect(fake_run / "run.db")
    table = parse(fake_run / "report.html").tables["table-lineage"]
    winner = json.loads((fake_run / "summary.json").read_text())["best"]["id"]
    expected, todo = set(), [winner]
    while todo:
        cid = todo.pop()
        expected.add(cid)
        todo += json.loads(db.execute("SELECT parent_ids FROM candidates WHERE id = ?", (cid,)).fetchone()[0])
    assert {int(k) for k in table} == expected
    for key, cells in table.items():
        action = db.execute("SELECT action FROM candidates WHERE id = ?", (int(key),)).fetchone()[0]
        op = json.loads(action)["operator"] if action else "—"
        assert cells[3][2] == op


def test_llm_and_breakdown_tables_match_the_store(fake_run: Path) -> None:
    db = sqlite3.connect(fake_run / "run.db")
    tables = parse(fake_run / "report.html").tables
    calls, inp, outp = db.execute("SELECT COUNT(*), SUM(input_tokens * (cached = 0)), SUM(output_tokens * (cached = 0))"
                                  " FROM llm_calls").fetchone()
    (row,) = tables["table-llm"].values()
    assert int(row[2][0]) == calls and int(row[5][0]) == inp and int(row[6][0]) == outp
    import json

    breakdown = tables["table-breakdown-subject"]
    for cid, origin in db.execute("SELECT id, origin FROM candidates WHERE status = 'ok'"):
        label = origin.split(":", 1)[1] if origin.startswith("zoo:") else f"#{cid} ({origin})"
        rows = [json.loads(b) for b, in db.execute(
            "SELECT breakdown FROM evaluations WHERE candidate_id = ? AND status = 'ok' AND breakdown IS NOT NULL"
            " AND (purpose = 'final' OR seed = 0)", (cid,))]
        if label not in breakdown or not rows:
            continue
        nat = statistics.mean(r["subject"]["nat"]["accuracy"] for r in rows)
        assert float(breakdown[label][1][0]) == nat


def test_report_shows_only_measured_curves_and_the_reproduce_command(fake_run: Path) -> None:
    from autofusion.report.data import load_report_data
    from autofusion.store import SQLiteStore
    import json

    store = SQLiteStore(fake_run / "run.db")
    data = load_report_data(fake_run, store, json.loads((fake_run / "summary.json").read_text()))
    recorded = {r[0] for r in store.db.execute(
        "SELECT candidate_id FROM evaluations WHERE purpose = 'search' AND seed = 0 AND json_array_length(curves, '$.val_accuracy') > 0")}
    plotted = {c.candidate_id for c in data.models if any(name.endswith(c.label) for name in data.curves)}
    assert plotted and plotted <= recorded
    for name, curves in data.curves.items():
        assert curves["val_accuracy"] and curves["train_loss"]
    page = (fake_run / "report.html").read_text()
    assert "autofusion search --task &#x27;/tmp/fake task&#x27; --budget 4" in page
    md = (fake_run / "report.md").read_text()
    assert "| #5 (llm:fake-model) | winner |" in md
    for link in ("report_files/best_so_far.png", "report_files/acc_params.png", "report_files/curves.png"):
        assert link in md and (fake_run / link).stat().st_size > 1000
    assert "http://" not in page and "https://" not in page  # opens offline: nothing fetched
