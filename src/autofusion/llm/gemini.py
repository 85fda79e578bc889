"""Gemini `generateContent` through the official `google-genai` SDK (Gemini Developer API).

`POST {base_url}/v1beta/models/{model}:generateContent`; key from `GEMINI_API_KEY` or
`GOOGLE_API_KEY` (in that order), sent by the SDK as `x-goog-api-key`. A custom endpoint goes in
`http_options=types.HttpOptions(base_url=...)`. System messages become `system_instruction`,
assistant turns the role "model". Output tokens count the reply and the model's thinking tokens
(both are billed). The SDK's retries are off (`HttpRetryOptions(attempts=1)`): the base retries.
"""

from __future__ import annotations

import importlib
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

KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """httpx-family transport errors (timeouts, refused connections), whichever httpx is present."""
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


class GeminiProvider(LLMProvider):
    name = "gemini"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(model, base_url=base_url, **kwargs)
        genai = import_sdk("google.genai", "google-genai")
        self._types = import_sdk("google.genai.types", "google-genai")
        self._errors = import_sdk("google.genai.errors", "google-genai")
        self._transport = _transport_errors()
        key = api_key or api_key_from_env("gemini", KEY_VARS)
        assert key is not None
        self._secrets = (key,)
        options = self._types.HttpOptions(
            base_url=base_url,
            timeout=max(1, int(self.request_timeout_s * 1000)),  # milliseconds
            retry_options=self._types.HttpRetryOptions(attempts=1),
        )
        self._client = genai.Client(api_key=key, vertexai=False, http_options=options)

    def key_hint(self) -> str:
        return " or ".join(KEY_VARS)

    def _send(self, messages: Sequence[Message], *, temperature: float | None, max_tokens: int) -> Completion:
        types = self._types
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        contents = [
            types.Content(role="model" if m.role == "assistant" else "user", parts=[types.Part(text=m.content)])
            for m in messages
            if m.role != "system"
        ]
        config = types.GenerateContentConfig(
            max_output_tokens=max_tokens,
            temperature=temperature,
            system_instruction=system or None,
        )
        response = self._client.models.generate_content(model=self.model, contents=contents, config=config)
        if not response.candidates:
            raise ProviderError("reply has no candidates (blocked or empty)", retryable=True)
        candidate = response.candidates[0]
        parts = candidate.content.parts if candidate.content and candidate.content.parts else []
        text = "".join(p.text for p in parts if p.text and not getattr(p, "thought", False))
        usage = response.usage_metadata
        output = (getattr(usage, "candidates_token_count", 0) or 0) + (
            getattr(usage, "thoughts_token_count", 0) or 0
        )
        reason = candidate.finish_reason
        return Completion(
            text=text,
            model=response.model_version or self.model,
            input_tokens=int(getattr(usage, "prompt_token_count", 0) or 0),
            output_tokens=int(output),
            latency_s=0.0,
            finish_reason=getattr(reason, "value", reason),
            raw=reply_fields(response),
        )

    def _classify(self, exc: Exception) -> ProviderError:
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, self._errors.APIError):
            headers = getattr(getattr(exc, "response", None), "headers", None)
            return status_error(int(exc.code), str(exc.message or exc), headers)
        if isinstance(exc, self._transport) or isinstance(exc, ValueError):
            return transport_error(exc)  # timeouts, refused connections, unreadable JSON
        return ProviderError(f"{type(exc).__name__}: {exc}", retryable=False)
