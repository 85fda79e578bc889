"""The provider interface: messages in, one normalised `Completion` out, with retries written once.

A provider subclass implements `_send` (one HTTP request through its official SDK, whose own
retries are disabled) and `_classify` (turn an SDK exception into a `ProviderError`). The base
class owns the retry loop: exponential backoff with jitter on rate limits (honouring
`Retry-After`), 5xx, timeouts, connection errors and malformed replies; an injectable `sleep` and
random source so tests never sleep for real. Providers never see a candidate, a task or a cache:
they only talk to an endpoint.

Errors: a request that still fails after the retries raises `ProviderError` (the generator turns
it into `GenerationFailed`); a refused key or an unknown model raises `ProviderConfigError`, an
`AutoFusionError`, because every later call would fail the same way. No message, repr or record
made here ever contains the API key.
"""

from __future__ import annotations

import abc
import email.utils
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from autofusion.errors import AutoFusionError

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
# Finish reasons that mean "the reply was cut off by the token limit", as each protocol spells it.
TRUNCATED_FINISH_REASONS = frozenset({"length", "max_tokens", "MAX_TOKENS"})
RETRYABLE_STATUS = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"message role {self.role!r} is not one of {ROLES}")

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Completion:
    """One reply, the same shape whatever the provider."""

    text: str
    model: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    finish_reason: str | None  # as the provider spelled it ("stop", "end_turn", "MAX_TOKENS"...)
    raw: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    n_retries: int = 0  # failed HTTP tries before this reply

    @property
    def truncated(self) -> bool:
        return self.finish_reason in TRUNCATED_FINISH_REASONS


class ProviderError(Exception):
    """A request that failed; `retryable` says whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


class ProviderConfigError(AutoFusionError):
    """The endpoint refused the key or does not know the model: every call would fail alike."""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff: try i waits about min(max_delay_s, base_delay_s * 2**i), jittered, or Retry-After."""

    max_retries: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay_s(self, n_failed: int, retry_after_s: float | None, rng: random.Random) -> float:
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (n_failed - 1))
        jittered = backoff * (0.5 + 0.5 * rng.random())  # "equal jitter": never zero, never doubled
        if retry_after_s is not None:
            # The server said when to come back; never earlier, and never absurdly later.
            return min(max(retry_after_s, jittered), max(self.max_delay_s, retry_after_s))
        return jittered


class LLMProvider(abc.ABC):
    """One endpoint and model. Subclasses implement `_send` and `_classify`."""

    name: str = "provider"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        request_timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not model:
            raise ProviderConfigError(f"{self.name}: no model given; pass a model name, e.g. --model NAME")
        self.model = model
        self.base_url = base_url
        self.request_timeout_s = float(request_timeout_s)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._secrets: tuple[str, ...] = ()  # set by subclasses: strings scrubbed from every message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r})"

    # --- the part each provider writes -------------------------------------------------------
    @abc.abstractmethod
    def _send(self, messages: Sequence[Message], *, temperature: float | None, max_tokens: int) -> Completion:
        """One request, no retries. Raise anything; `_classify` turns it into a ProviderError."""

    @abc.abstractmethod
    def _classify(self, exc: Exception) -> ProviderError:
        """Map an exception raised by `_send` to a ProviderError (retryable or not)."""

    # --- the part written once ---------------------------------------------------------------
    def complete(
        self, messages: Sequence[Message], *, temperature: float | None = 0.7, max_tokens: int = 4096
    ) -> Completion:
        """Send `messages`; retry transient failures; return the reply or raise ProviderError."""
        if not messages or messages[-1].role != "user":
            raise ValueError("a request must end with a user message")
        n_failed = 0
        while True:
            started = time.monotonic()
            try:
                reply = self._send(messages, temperature=temperature, max_tokens=max_tokens)
            except Exception as exc:  # noqa: BLE001 - every SDK failure is classified below
                error = self._scrubbed(self._classify(exc))
                self._refuse_config_faults(error)
                n_failed += 1
                if not error.retryable or n_failed > self.retry.max_retries:
                    if error.retryable:
                        error = self._scrubbed(
                            ProviderError(
                                f"{error} (gave up after {n_failed} tries)",
                                retryable=False,
                                status=error.status,
                            )
                        )
                    raise error from None
                delay = self.retry.delay_s(n_failed, error.retry_after_s, self._rng)
                log.warning("%s: %s; retry %d/%d in %.1fs", self.name, error, n_failed,
                            self.retry.max_retries, delay)
                self._sleep(delay)
                continue
            latency = time.monotonic() - started
            return Completion(
                text=reply.text,
                model=reply.model or self.model,
                input_tokens=reply.input_tokens,
                output_tokens=reply.output_tokens,
                latency_s=latency,
                finish_reason=reply.finish_reason,
                raw=reply.raw,
                n_retries=n_failed,
            )

    def _refuse_config_faults(self, error: ProviderError) -> None:
        where = self.base_url or "the default endpoint"
        if error.status in (401, 403):
            raise ProviderConfigError(
                f"{self.name} at {where} refused the API key (HTTP {error.status}): {error}. "
                f"Check the key in {self.key_hint()}."
            )
        if error.status == 404:
            raise ProviderConfigError(
                f"{self.name} at {where} does not know model {self.model!r} (HTTP 404): {error}. "
                "Check --model and --base-url."
            )

    def key_hint(self) -> str:
        """The environment variable(s) the key comes from, for error messages."""
        return "the provider's API-key environment variable"

    def _scrubbed(self, error: ProviderError) -> ProviderError:
        text = redact(str(error), self._secrets)
        if len(text) > MAX_ERROR_CHARS:
            text = text[:MAX_ERROR_CHARS] + "..."
        return ProviderError(text, retryable=error.retryable, status=error.status,
                             retry_after_s=error.retry_after_s)


# Shapes of common API keys, scrubbed even when the exact key is unknown to us.
_KEY_PATTERNS = (
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),  # OpenAI, Anthropic, DeepSeek...
    re.compile(r"AIza[0-9A-Za-z_\-]{20,}"),  # Google
)


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """`text` with every given secret and every key-shaped string replaced by '[redacted]'."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    for pattern in _KEY_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), if any."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(status: int, message: str, headers: Mapping[str, str] | None) -> ProviderError:
    """A ProviderError for an HTTP status, retryable for 408/409/425/429 and 5xx."""
    return ProviderError(
        f"HTTP {status}: {message}",
        retryable=status in RETRYABLE_STATUS,
        status=status,
        retry_after_s=retry_after_s(headers),
    )


def transport_error(exc: Exception) -> ProviderError:
    """A ProviderError for a timeout, a refused connection or an unreadable reply (retryable)."""
    return ProviderError(f"{type(exc).__name__}: {exc}", retryable=True)


def reply_fields(raw: Any) -> dict[str, Any] | None:
    """A JSON-able copy of an SDK response object (pydantic models dump themselves)."""
    dump = getattr(raw, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", exclude_none=True)
        except Exception:  # noqa: BLE001 - the raw copy is a convenience, never essential
            return None
    return raw if isinstance(raw, dict) else None
