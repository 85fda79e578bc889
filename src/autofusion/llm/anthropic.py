"""Anthropic Messages API through the official `anthropic` SDK.

`POST {base_url}/v1/messages`; key from `ANTHROPIC_API_KEY`. System messages go to the `system`
field, the rest alternate user/assistant. The SDK (2.x) sends API version 2026-10-21, which has no
sampling parameters: a request carrying `temperature` is refused with HTTP 400, so the
temperature setting is not sent to this provider (it still enters the cache key). The SDK's own
retries are off: the base class retries.
"""

from __future__ import annotations

from typing import Any, Sequence

from autofusion.llm.base import (
    Completion,
    LLMProvider,
    Message,
    ProviderError,
    reply_fields,
    status_error,
    transport_error,
)
from autofusion.llm.keys import api_key_from_env, import_sdk

KEY_VARS = ("ANTHROPIC_API_KEY",)


class AnthropicProvider(LLMProvider):
    name = "anthropic"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(model, base_url=base_url, **kwargs)
        sdk = import_sdk("anthropic", "anthropic")
        key = api_key or api_key_from_env("anthropic", KEY_VARS)
        assert key is not None
        self._secrets = (key,)
        self._sdk = sdk
        # An explicit api_key keeps the SDK from reading profiles or other credentials on disk.
        self._client = sdk.Anthropic(
            api_key=key, base_url=base_url, timeout=self.request_timeout_s, max_retries=0
        )

    def key_hint(self) -> str:
        return " or ".join(KEY_VARS)

    def _send(self, messages: Sequence[Message], *, temperature: float | None, max_tokens: int) -> Completion:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        turns = [m.to_json() for m in messages if m.role != "system"]
        kwargs: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens, "messages": turns}
        if system:
            kwargs["system"] = system
        response = self._client.messages.create(**kwargs)
        text = "".join(
            getattr(block, "text", "") for block in response.content if getattr(block, "type", "") == "text"
        )
        usage = response.usage
        return Completion(
            text=text,
            model=response.model or self.model,
            input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
            latency_s=0.0,
            finish_reason=response.stop_reason,
            raw=reply_fields(response),
        )

    def _classify(self, exc: Exception) -> ProviderError:
        sdk = self._sdk
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, sdk.APIStatusError):
            return status_error(exc.status_code, exc.message, exc.response.headers)
        if isinstance(exc, (sdk.APIConnectionError, sdk.APIResponseValidationError, ValueError)):
            return transport_error(exc)
        return ProviderError(f"{type(exc).__name__}: {exc}", retryable=False)
