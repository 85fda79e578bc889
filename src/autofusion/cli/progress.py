"""Terminal progress for `autofusion search`: a rich progress bar and one line per candidate.

Off when stderr is not a terminal (CI logs, pipes), unless -v asks for the lines.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


class Progress:
    def __init__(self, total: int, enabled: bool, verbose: bool = False) -> None:
        self.enabled = enabled
        self.lines = enabled or verbose
        self.console = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        self.bar = RichProgress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                                TimeElapsedColumn(), console=self.console, transient=False) if enabled else None
        self.task_id = self.bar.add_task("", total=total) if self.bar else None

    def __enter__(self) -> "Progress":
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "candidate":
            self._candidate(payload)
        elif kind == "phase" and self.lines:
            self.console.print(f"final comparison: {payload['n_finalists']} models x {payload['n_seeds']} seeds")

    def _candidate(self, p: dict[str, Any]) -> None:
        row, best = p["row"], p["best"]
        best_text = f"best {best.val_accuracy:.4f} (#{best.id})" if best else "best —"
        if self.bar is not None:
            self.bar.update(self.task_id, completed=p["n_proposals"], description=best_text)
        if not self.lines:
            return
        acc = f"val {row.val_accuracy:.4f}" if row.val_accuracy is not None else f"{row.stage or ''}".strip()
        params = f"params {row.params:,}" if row.params is not None else ""
        style = {"ok": "green", "rejected": "yellow", "failed": "red", "timeout": "red"}.get(row.status, "")
        self.console.print(f"#{row.id:<4d} {row.origin:<24.24s} [{style}]{row.status:<8s}[/] {acc:<14s} {params:<18s} {best_text}")
