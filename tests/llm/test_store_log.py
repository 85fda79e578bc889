"""StoreCallLog against the real run store: calls land in run.db and are found again on resume."""

from __future__ import annotations

from autofusion.llm import LLMCall
from autofusion.llm.store_log import StoreCallLog
from autofusion.store import SQLiteStore


def test_calls_are_stored_with_their_fields_and_only_paid_successes_are_served(tmp_path):
    store = SQLiteStore(tmp_path / "run.db")
    log = StoreCallLog(store)
    paid = LLMCall(key="k1", prompt_hash="p", provider="openai", model="m", reply="code", input_tokens=30,
                   output_tokens=20, latency_s=1.5, finish_reason="stop", attempt=2, proposal_index=7,
                   cost_usd=0.001, messages='[{"role":"user","content":"hi"}]', created_at=123.0)
    log.record(paid)
    log.record(LLMCall(key="k2", prompt_hash="p", provider="openai", model="m", reply=None, error="HTTP 500"))
    log.record(LLMCall(key="k3", prompt_hash="p", provider="openai", model="m", reply="c", cached=True))
    (row, failed, cached) = store.llm_calls()
    assert (row["candidate_index"], row["input_tokens"], row["attempt"], row["cost_usd"]) == (7, 30, 2, 0.001)
    assert row["messages"].startswith("[{") and row["created"] == 123.0 and failed["error"] == "HTTP 500"
    hit = log.lookup("k1")
    assert hit is not None and (hit.reply, hit.finish_reason, hit.model) == ("code", "stop", "m")
    assert log.lookup("k2") is None and log.lookup("k3") is None and log.lookup("zzz") is None
    assert store.llm_totals()["input_tokens"] == 30
