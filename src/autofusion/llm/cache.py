"""`LLMCache`: a standalone SQLite CallLog, so a re-run with the same seed reuses paid replies.

Default path: `$AUTOFUSION_HOME/llm_cache.db` (AUTOFUSION_HOME defaults to ~/.cache/autofusion).
Only successful replies are served back (`lookup`); failed calls are kept for the record but never
replayed. Replies served from the cache are not stored again. Safe to share between threads;
each write is its own transaction. It holds prompts' hashes and replies, never a key.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from autofusion.errors import ConfigError
from autofusion.llm.calls import LLMCall

_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    ok INTEGER NOT NULL,
    created_at REAL NOT NULL,
    call TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS llm_calls_key ON llm_calls (key, ok);
"""


def autofusion_home() -> Path:
    """$AUTOFUSION_HOME, or ~/.cache/autofusion."""
    value = os.environ.get("AUTOFUSION_HOME")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "autofusion"


def default_cache_path() -> Path:
    return autofusion_home() / "llm_cache.db"


class LLMCache:
    """A CallLog on disk keyed by `cache_key`."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the LLM cache at {self.path}: {exc}; set AUTOFUSION_HOME to a "
                "writable directory or pass another cache path"
            ) from None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LLMCache({str(self.path)!r})"

    def record(self, call: LLMCall) -> None:
        if call.cached:
            return  # already stored when it was paid for
        row = (call.key, int(call.ok), call.created_at or time.time(), json.dumps(call.to_json()))
        with self._lock:
            self._db.execute("INSERT INTO llm_calls (key, ok, created_at, call) VALUES (?, ?, ?, ?)", row)

    def lookup(self, key: str) -> LLMCall | None:
        with self._lock:
            row = self._db.execute(
                "SELECT call FROM llm_calls WHERE key = ? AND ok = 1 ORDER BY id LIMIT 1", (key,)
            ).fetchone()
        return LLMCall.from_json(json.loads(row[0])) if row else None

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM llm_calls").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
