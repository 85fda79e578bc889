"""`LLMSettings`, every knob of the LLM generator with its default, and `make_provider`.

The settings hold no secret: keys are read from the environment when the provider is built, so
that a missing key fails here, before a search starts. `make_provider` is the one place where a
provider name becomes a class.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

from autofusion.errors import ConfigError
from autofusion.llm.base import LLMProvider, RetryPolicy

PROVIDERS = ("openai", "gemini", "anthropic")


@dataclass(frozen=True)
class LLMSettings:
    provider: str  # one of PROVIDERS
    model: str
    base_url: str | None = None  # an OpenAI-compatible server, a proxy, or a test server
    temperature: float | None = 0.7  # None: not sent (for models that refuse it)
    max_tokens: int = 4096  # per reply; long enough for a module, short enough to bound cost
    max_llm_calls: int | None = None  # paid calls for the whole run (cache hits are free)
    max_llm_tokens: int | None = None  # input + output tokens for the whole run
    repair_turns: int = 2  # extra replies after a rejected one, in the same conversation
    request_timeout_s: float = 120.0  # one HTTP request
    max_retries: int = 5  # per request, on 429/5xx/timeouts/connection errors
    price_per_mtok_in: float | None = None  # USD per million input tokens, for the cost line
    price_per_mtok_out: float | None = None

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ConfigError(f"unknown LLM provider {self.provider!r}; choose one of {', '.join(PROVIDERS)}")
        if not self.model:
            raise ConfigError("no LLM model given; pass one, e.g. --model gpt-4.1-mini")
        _check(self.max_tokens >= 1, "max_tokens", self.max_tokens, "at least 1")
        _check(self.repair_turns >= 0, "repair_turns", self.repair_turns, "0 or more")
        _check(self.request_timeout_s > 0, "request_timeout_s", self.request_timeout_s, "positive")
        _check(self.max_retries >= 0, "max_retries", self.max_retries, "0 or more")
        for name in ("max_llm_calls", "max_llm_tokens"):
            value = getattr(self, name)
            _check(value is None or value >= 1, name, value, "at least 1, or unset for no limit")
        for name in ("price_per_mtok_in", "price_per_mtok_out"):
            value = getattr(self, name)
            _check(value is None or value >= 0, name, value, "0 or more, or unset")
        if self.temperature is not None:
            _check(0 <= self.temperature <= 2, "temperature", self.temperature, "between 0 and 2")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def settings_from_dict(values: dict[str, Any]) -> LLMSettings:
    """LLMSettings from a config's `llm` table; unknown or missing keys fail with the fix."""
    known = [f.name for f in fields(LLMSettings)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown LLM setting(s) {unknown}; known: {', '.join(known)}")
    missing = [name for name in ("provider", "model") if not values.get(name)]
    if missing:
        raise ConfigError(f"the LLM generator needs {' and '.join(missing)}: pass "
                          + " ".join(f"--{name} NAME" for name in missing) + f" (providers: {', '.join(PROVIDERS)})")
    return LLMSettings(**values)


def _check(ok: bool, name: str, value: object, wanted: str) -> None:
    if not ok:
        raise ConfigError(f"LLM setting {name}={value!r} is invalid: it must be {wanted}")


def make_provider(
    settings: LLMSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> LLMProvider:
    """Build the provider `settings` names; raises AutoFusionError if its SDK or key is missing."""
    common: dict[str, Any] = {
        "base_url": settings.base_url,
        "request_timeout_s": settings.request_timeout_s,
        "retry": RetryPolicy(max_retries=settings.max_retries),
        "sleep": sleep,
        "rng": rng,
    }
    if settings.provider == "openai":
        from autofusion.llm.openai import OpenAIProvider

        return OpenAIProvider(settings.model, **common)
    if settings.provider == "gemini":
        from autofusion.llm.gemini import GeminiProvider

        return GeminiProvider(settings.model, **common)
    from autofusion.llm.anthropic import AnthropicProvider

    return AnthropicProvider(settings.model, **common)
