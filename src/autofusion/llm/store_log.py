"""`StoreCallLog`: the CallLog that writes LLM calls into the run store's `llm_calls` table.

An adapter only: it maps `LLMCall` fields onto the store's columns (`record_llm_call(**fields)`)
and looks earlier successful, paid replies up by cache key, so that a resumed run does not pay for
a reply it already has. It does not create tables; the store owns its schema.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

from autofusion.llm.calls import LLMCall


class _RunStore(Protocol):
    db: sqlite3.Connection

    def record_llm_call(self, **fields: Any) -> None: ...


class StoreCallLog:
    """A CallLog over `autofusion.store.SQLiteStore` (anything with `record_llm_call` and `db`)."""

    def __init__(self, store: _RunStore) -> None:
        self.store = store

    def record(self, call: LLMCall) -> None:
        created = {"created": call.created_at} if call.created_at else {}  # else the store stamps it
        self.store.record_llm_call(
            **created,
            candidate_index=call.proposal_index,
            key=call.key,
            provider=call.provider,
            model=call.model,
            prompt_hash=call.prompt_hash,
            messages=call.messages,
            reply=call.reply,
            finish_reason=call.finish_reason,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            latency_s=call.latency_s,
            error=call.error,
            cached=int(call.cached),
            attempt=call.attempt,
            cost_usd=call.cost_usd,
        )

    def lookup(self, key: str) -> LLMCall | None:
        row = self.store.db.execute(
            "SELECT key, provider, model, prompt_hash, reply, finish_reason, input_tokens, output_tokens,"
            " latency_s, attempt FROM llm_calls"
            " WHERE key = ? AND error IS NULL AND reply IS NOT NULL AND COALESCE(cached, 0) = 0"
            " ORDER BY id LIMIT 1",
            (key,),
        ).fetchone()
        if row is None:
            return None
        (key, provider, model, prompt_hash, reply, finish, n_in, n_out, latency, attempt) = tuple(row)
        return LLMCall(key=key, prompt_hash=prompt_hash or "", provider=provider or "", model=model or "",
                       reply=reply, finish_reason=finish, input_tokens=n_in or 0, output_tokens=n_out or 0,
                       latency_s=latency or 0.0, attempt=attempt or 1)
