"""Ctrl-C (SIGINT) and SIGTERM stop a search cleanly: workers killed, store consistent, summary written."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autofusion.cli import main

from test_search import write_config


def _zygotes_for(task: Path) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"autofusion.sandbox.zygote" in cmd and str(task.resolve()).encode() in cmd:
                pids.append(int(entry))
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_and_the_run_resumes(tmp_path: Path, signum: int) -> None:
    from helpers import write_tiny_task

    task = write_tiny_task(tmp_path / "task")  # a task of its own, so its zygotes can be told apart
    cfg = write_config(tmp_path / "cfg.toml", task, budget=5)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "autofusion.cli", "search", "--config", str(cfg), "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            done = sqlite3.connect(run / "run.db").execute(
                "SELECT COUNT(*) FROM candidates WHERE proposal_index IS NOT NULL AND status != 'pending'").fetchone()[0]
        except sqlite3.Error:
            continue
        if done >= 1:
            break
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["complete"] is False and summary["stopped_reason"] == "interrupted"
    time.sleep(0.5)
    assert _zygotes_for(task) == [], "a worker outlived the interrupted search"
    assert main(["search", "--resume", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["complete"] is True and summary["n_candidates"] == 5
    db = sqlite3.connect(run / "run.db")
    assert all(n == 1 for _, n in db.execute(
        "SELECT candidate_id, COUNT(*) FROM evaluations WHERE purpose = 'search' GROUP BY candidate_id"))
