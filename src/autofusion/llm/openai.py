"""OpenAI chat completions through the official `openai` SDK, for any OpenAI-compatible server.

`POST {base_url}/chat/completions`. The default endpoint is api.openai.com (key from
`OPENAI_API_KEY`); a `base_url` elsewhere (vLLM, Ollama, llama.cpp, DeepSeek, DashScope, Kimi)
may run without a key, in which case a placeholder is sent. Against api.openai.com the token limit
goes out as `max_completion_tokens` (what current OpenAI models accept); elsewhere as `max_tokens`
(what compatible servers accept). The SDK's own retries are off: the base class retries.
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
from autofusion.llm.keys import PLACEHOLDER_KEY, api_key_from_env, import_sdk, is_local_endpoint

KEY_VARS = ("OPENAI_API_KEY",)
OFFICIAL_HOST = "api.openai.com"


class OpenAIProvider(LLMProvider):
    name = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(model, base_url=base_url, **kwargs)
        sdk = import_sdk("openai", "openai")
        self._local = is_local_endpoint(base_url, OFFICIAL_HOST)
        key = api_key or api_key_from_env("openai", KEY_VARS, optional=self._local) or PLACEHOLDER_KEY
        self._secrets = (key,)
        self._sdk = sdk
        self._client = sdk.OpenAI(
            api_key=key, base_url=base_url, timeout=self.request_timeout_s, max_retries=0
        )

    def key_hint(self) -> str:
        return " or ".join(KEY_VARS)

    def _send(self, messages: Sequence[Message], *, temperature: float | None, max_tokens: int) -> Completion:
        kwargs: dict[str, Any] = {"model": self.model, "messages": [m.to_json() for m in messages]}
        kwargs["max_tokens" if self._local else "max_completion_tokens"] = max_tokens
        if temperature is not None:
            kwargs["temperature"] = temperature
        response = self._client.chat.completions.create(**kwargs)
        if not response.choices:
            raise ProviderError("reply has no choices", retryable=True)
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            model=response.model or self.model,
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=0.0,
            finish_reason=choice.finish_reason,
            raw=reply_fields(response),
        )

    def _classify(self, exc: Exception) -> ProviderError:
        sdk = self._sdk
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, sdk.APIStatusError):
            return status_error(exc.status_code, exc.message, exc.response.headers)
        if isinstance(exc, (sdk.APIConnectionError, sdk.APIResponseValidationError, ValueError)):
            return transport_error(exc)  # timeouts, refused connections, unreadable JSON
        return ProviderError(f"{type(exc).__name__}: {exc}", retryable=False)
