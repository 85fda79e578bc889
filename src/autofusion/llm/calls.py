"""The record of one LLM call, the sink that stores it, the cache key, and the run's accounting.

`CallLog` is the small protocol the search hands the generator (the run store implements it in
SQLite; `InMemoryCallLog` is for tests; `LLMCache` in cache.py is a standalone SQLite one).
`cache_key` says which requests are "the same": same provider, model, endpoint, sampling settings,
messages and sample index. `LLMAccounting` adds up paid calls, tokens and cost for summary.json.
Nothing here talks to a provider.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

from autofusion.llm.base import Message


@dataclass(frozen=True)
class LLMCall:
    """One request to a provider (or one reply served from a cache). Never holds a key."""

    key: str  # cache_key(...) of the request
    prompt_hash: str  # sha256 of the messages alone
    provider: str
    model: str
    reply: str | None  # None when the call failed
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    finish_reason: str | None = None
    error: str | None = None  # the provider error after retries, if the call failed
    cached: bool = False  # served from a CallLog/cache: no tokens were paid
    attempt: int = 1  # 1 = first reply for a request, 2.. = repair turns
    n_retries: int = 0  # failed HTTP tries inside this call
    request_seed: int | None = None  # GenerationRequest.seed
    proposal_index: int | None = None  # GenerationRequest.context["proposal_index"], when the search gives it
    operator: str | None = None
    cost_usd: float | None = None  # when a price table is configured; 0 for cache hits
    messages: str | None = field(default=None, repr=False)  # the request's messages as JSON
    created_at: float = 0.0  # time.time() when recorded

    @property
    def ok(self) -> bool:
        return self.error is None and self.reply is not None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LLMCall:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@runtime_checkable
class CallLog(Protocol):
    """Where LLM calls go, and where earlier successful replies are looked up by cache key."""

    def record(self, call: LLMCall) -> None: ...

    def lookup(self, key: str) -> LLMCall | None: ...


class InMemoryCallLog:
    """A CallLog in a list; `lookup` returns the first successful, non-cached call with that key."""

    def __init__(self) -> None:
        self.calls: list[LLMCall] = []
        self._lock = threading.Lock()

    def record(self, call: LLMCall) -> None:
        with self._lock:
            self.calls.append(call)

    def lookup(self, key: str) -> LLMCall | None:
        with self._lock:
            return next((c for c in self.calls if c.key == key and c.ok and not c.cached), None)


def messages_json(messages: Sequence[Message]) -> str:
    return json.dumps([m.to_json() for m in messages], ensure_ascii=False, separators=(",", ":"))


def prompt_hash(messages: Sequence[Message]) -> str:
    return hashlib.sha256(messages_json(messages).encode("utf-8")).hexdigest()


def cache_key(
    *,
    provider: str,
    model: str,
    base_url: str | None,
    temperature: float | None,
    max_tokens: int,
    messages: Sequence[Message],
    sample_index: int,
) -> str:
    """sha256 over everything that makes two requests interchangeable."""
    identity = {
        "provider": provider,
        "model": model,
        "base_url": base_url,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "messages": [m.to_json() for m in messages],
        "sample_index": sample_index,
    }
    blob = json.dumps(identity, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class LLMAccounting:
    """Running totals for one run. `summary()` is summary.json's `llm` block."""

    price_per_mtok_in: float | None = None
    price_per_mtok_out: float | None = None
    calls: int = 0  # paid calls that reached the provider (failed ones included)
    failed_calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, call: LLMCall) -> None:
        with self._lock:
            if call.cached:
                self.cached_calls += 1
                return
            self.calls += 1
            self.failed_calls += 0 if call.ok else 1
            self.input_tokens += call.input_tokens
            self.output_tokens += call.output_tokens
            self.latency_s += call.latency_s

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def cost_usd(self) -> float | None:
        if self.price_per_mtok_in is None and self.price_per_mtok_out is None:
            return None
        return (
            self.input_tokens * (self.price_per_mtok_in or 0.0)
            + self.output_tokens * (self.price_per_mtok_out or 0.0)
        ) / 1e6

    def summary(self) -> dict[str, Any]:
        cost = self.cost_usd()
        return {
            "calls": self.calls,
            "failed_calls": self.failed_calls,
            "cached_calls": self.cached_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "latency_s": round(self.latency_s, 3),
            "cost_usd": None if cost is None else round(cost, 6),
        }
