"""Cache keys, call logs (in memory and SQLite), accounting and settings validation."""

from __future__ import annotations

import pytest

from autofusion.errors import ConfigError
from autofusion.llm import (
    InMemoryCallLog,
    LLMAccounting,
    LLMCache,
    LLMCall,
    LLMSettings,
    Message,
    cache_key,
    default_cache_path,
)

BASE = dict(provider="openai", model="m", base_url=None, temperature=0.7, max_tokens=100,
            messages=[Message("user", "hi")], sample_index=0)


def call(key: str = "k", **kw: object) -> LLMCall:
    fields: dict[str, object] = {"key": key, "prompt_hash": "p", "provider": "openai", "model": "m",
                                 "reply": "r", "input_tokens": 10, "output_tokens": 5}
    return LLMCall(**{**fields, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("change", [
    {"provider": "gemini"}, {"model": "m2"}, {"base_url": "http://localhost:8000/v1"}, {"temperature": 0.2},
    {"max_tokens": 101}, {"messages": [Message("user", "hi!")]}, {"sample_index": 1},
    {"messages": [Message("system", "s"), Message("user", "hi")]},
])
def test_cache_key_changes_with_every_part_of_the_request(change):
    assert cache_key(**{**BASE, **change}) != cache_key(**BASE)
    assert cache_key(**BASE) == cache_key(**dict(BASE))


def test_in_memory_log_serves_only_successful_paid_calls():
    log = InMemoryCallLog()
    log.record(call("a", reply=None, error="HTTP 500"))
    log.record(call("b", cached=True))
    assert log.lookup("a") is None and log.lookup("b") is None
    log.record(call("a"))
    assert log.lookup("a").reply == "r"


def test_sqlite_cache_persists_across_instances(tmp_path):
    path = tmp_path / "sub" / "cache.db"
    first = LLMCache(path)
    first.record(call("x", reply="the reply", finish_reason="stop", attempt=2, request_seed=4))
    first.record(call("y", reply=None, error="timeout"))
    first.close()
    again = LLMCache(path)
    hit = again.lookup("x")
    assert hit is not None and hit.reply == "the reply" and hit.attempt == 2 and hit.request_seed == 4
    assert again.lookup("y") is None and again.lookup("nope") is None and len(again) == 2


def test_default_cache_path_follows_autofusion_home(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOFUSION_HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / "llm_cache.db"
    assert LLMCache().path == tmp_path / "llm_cache.db"
    monkeypatch.delenv("AUTOFUSION_HOME")
    assert default_cache_path().parts[-3:] == (".cache", "autofusion", "llm_cache.db")


def test_an_unwritable_cache_location_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="AUTOFUSION_HOME"):
        LLMCache(blocker / "cache.db")


def test_accounting_counts_paid_calls_and_cost_but_not_cache_hits():
    acc = LLMAccounting(price_per_mtok_in=3.0, price_per_mtok_out=15.0)
    acc.add(call())
    acc.add(call(reply=None, error="HTTP 500", input_tokens=0, output_tokens=0))
    acc.add(call(cached=True, input_tokens=0, output_tokens=0))
    summary = acc.summary()
    assert summary["calls"] == 2 and summary["failed_calls"] == 1 and summary["cached_calls"] == 1
    assert (summary["input_tokens"], summary["output_tokens"]) == (10, 5)
    assert summary["cost_usd"] == pytest.approx((10 * 3 + 5 * 15) / 1e6)
    assert LLMAccounting().summary()["cost_usd"] is None


@pytest.mark.parametrize("bad, match", [
    ({"provider": "cohere"}, "unknown LLM provider 'cohere'"),
    ({"model": ""}, "no LLM model"),
    ({"max_tokens": 0}, "max_tokens=0"),
    ({"repair_turns": -1}, "repair_turns=-1"),
    ({"max_llm_calls": 0}, "max_llm_calls=0"),
    ({"temperature": 3.0}, "temperature=3.0"),
    ({"request_timeout_s": 0}, "request_timeout_s=0"),
])
def test_settings_refuse_bad_values_with_the_name_and_the_fix(bad, match):
    with pytest.raises(ConfigError, match=match):
        LLMSettings(**{"provider": "openai", "model": "m", **bad})


def test_settings_hold_no_key_and_serialise():
    settings = LLMSettings("anthropic", "claude-x", max_llm_calls=10)
    assert settings.to_json()["max_llm_calls"] == 10 and "key" not in " ".join(settings.to_json())


def test_settings_from_a_config_table_refuse_unknown_and_missing_keys():
    from autofusion.llm import settings_from_dict

    assert settings_from_dict({"provider": "gemini", "model": "g", "max_tokens": 512}).max_tokens == 512
    with pytest.raises(ConfigError, match=r"unknown LLM setting\(s\) \['max_token'\]"):
        settings_from_dict({"provider": "gemini", "model": "g", "max_token": 512})
    with pytest.raises(ConfigError, match="--model NAME"):
        settings_from_dict({"provider": "openai"})
