"""Each provider, through its real SDK, against a local server speaking that provider's protocol."""

from __future__ import annotations

import logging
import sys
import time

import pytest

from autofusion.errors import AutoFusionError
from autofusion.llm import LLMSettings, Message, ProviderConfigError, ProviderError, make_provider
from autofusion.llm.fake_server import FakeLLMServer, FakeStep, reply, status
from autofusion.llm.keys import PLACEHOLDER_KEY

KEY_VAR = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}

PROVIDERS = ("openai", "anthropic", "gemini")
MESSAGES = [Message("system", "You write PyTorch."), Message("user", "Write a fusion module.")]
ROUTES = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages", "gemini": ":generateContent"}


def build(provider: str, server: FakeLLMServer, sleeps: list[float] | None = None, **kw: object):
    settings = LLMSettings(provider, "test-model", base_url=server.base_url(provider), **kw)  # type: ignore[arg-type]
    return make_provider(settings, sleep=(sleeps if sleeps is not None else []).append)


def sent_key(provider: str, headers: dict[str, str]) -> str:
    """The key as the SDK put it on the wire, in the header its protocol uses."""
    if provider == "gemini":
        return headers["x-goog-api-key"]
    if provider == "anthropic" and "x-api-key" in headers:
        return headers["x-api-key"]
    scheme, _, value = headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    return value


@pytest.mark.parametrize("provider", PROVIDERS)
def test_completion_is_normalised_with_the_tokens_the_server_reported(provider, keys, server):
    server.push(reply("```python\nx = 1\n```", input_tokens=123, output_tokens=45))
    completion = build(provider, server).complete(MESSAGES, temperature=0.3, max_tokens=321)
    assert completion.text == "```python\nx = 1\n```"
    assert (completion.input_tokens, completion.output_tokens) == (123, 45)
    assert completion.model == "test-model"
    assert not completion.truncated and completion.n_retries == 0
    assert completion.latency_s > 0 and completion.raw is not None
    (request,) = server.requests
    assert request.path.endswith(ROUTES[provider]) and request.model == "test-model"
    assert sent_key(provider, request.headers) == keys[KEY_VAR[provider]]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_token_limit_finish_reason_is_reported_as_truncated(provider, keys, server):
    server.push(reply("```python\nclass FusionModel(", finish="length"))
    completion = build(provider, server).complete(MESSAGES)
    assert completion.truncated
    assert completion.finish_reason in {"length", "max_tokens", "MAX_TOKENS"}


def test_each_protocol_gets_the_system_prompt_and_limits_in_its_own_fields(keys, server):
    server.push(reply("a"), reply("b"), reply("c"))
    for provider in PROVIDERS:
        build(provider, server).complete(MESSAGES, temperature=0.25, max_tokens=777)
    openai_body, anthropic_body, gemini_body = (r.body for r in server.requests)
    assert openai_body["messages"][0] == {"role": "system", "content": "You write PyTorch."}
    assert openai_body["max_tokens"] == 777 and openai_body["temperature"] == 0.25
    assert anthropic_body["system"] == "You write PyTorch." and anthropic_body["max_tokens"] == 777
    assert [m["role"] for m in anthropic_body["messages"]] == ["user"]
    assert "temperature" not in anthropic_body  # API version 2026-10-21 refuses sampling params
    assert gemini_body["systemInstruction"]["parts"][0]["text"] == "You write PyTorch."
    assert gemini_body["generationConfig"] == {"temperature": 0.25, "maxOutputTokens": 777}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rate_limit_is_retried_after_the_servers_retry_after(provider, keys, server):
    server.push(status(429, retry_after="7"), reply("done"))
    sleeps: list[float] = []
    completion = build(provider, server, sleeps).complete(MESSAGES)
    assert completion.text == "done" and completion.n_retries == 1
    assert len(sleeps) == 1 and 7.0 <= sleeps[0] <= 60.0
    assert len(server.requests) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_server_errors_and_malformed_json_are_retried_with_growing_backoff(provider, keys, server):
    server.push(status(500), FakeStep(kind="malformed"), status(503), reply("finally"))
    sleeps: list[float] = []
    completion = build(provider, server, sleeps).complete(MESSAGES)
    assert completion.text == "finally" and completion.n_retries == 3
    assert len(sleeps) == 3
    # equal jitter: try i waits in [0.5, 1] * 2**(i-1) seconds
    for i, delay in enumerate(sleeps):
        assert 0.5 * 2**i <= delay <= 2**i


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retries_are_bounded_and_then_the_error_says_so(provider, keys, server):
    server.default = status(500)
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as caught:
        build(provider, server, sleeps, max_retries=2).complete(MESSAGES)
    assert "gave up after 3 tries" in str(caught.value) and not caught.value.retryable
    assert len(server.requests) == 3 and len(sleeps) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_reply_slower_than_the_request_timeout_is_abandoned_and_retried(provider, keys, server):
    server.push(FakeStep(kind="slow", text="late", delay_s=30), reply("on time"))
    started = time.monotonic()
    completion = build(provider, server, request_timeout_s=0.5).complete(MESSAGES)
    assert completion.text == "on time" and completion.n_retries == 1
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_refused_key_is_a_config_error_that_names_the_variable_not_the_key(provider, keys, server):
    server.push(status(401))
    with pytest.raises(ProviderConfigError) as caught:
        build(provider, server).complete(MESSAGES)
    message = str(caught.value)
    assert KEY_VAR[provider] in message and "401" in message
    assert keys[KEY_VAR[provider]] not in message
    assert len(server.requests) == 1  # not retried


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_unknown_model_is_a_config_error(provider, keys, server):
    server.push(status(404))
    with pytest.raises(ProviderConfigError, match="test-model"):
        build(provider, server).complete(MESSAGES)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_missing_key_fails_at_construction_naming_the_variable(provider, keys, monkeypatch, server):
    monkeypatch.delenv(KEY_VAR[provider])
    settings = LLMSettings(provider, "m", base_url=None if provider != "openai" else "https://api.openai.com/v1")
    with pytest.raises(AutoFusionError, match=KEY_VAR[provider]):
        make_provider(settings)
    assert server.requests == []


def test_gemini_also_takes_google_api_key(keys, monkeypatch, server):
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", "AIzaGoogleVariant0123456789abcdef")
    server.push(reply("ok"))
    build("gemini", server).complete(MESSAGES)
    assert server.requests[0].headers["x-goog-api-key"] == "AIzaGoogleVariant0123456789abcdef"


def test_a_local_openai_compatible_server_needs_no_key(keys, monkeypatch, server):
    monkeypatch.delenv("OPENAI_API_KEY")
    server.push(reply("local"))
    assert build("openai", server).complete(MESSAGES).text == "local"
    assert server.requests[0].headers["authorization"] == f"Bearer {PLACEHOLDER_KEY}"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_key_appears_in_no_repr(provider, keys, server):
    built = build(provider, server)
    assert keys[KEY_VAR[provider]] not in repr(built)
    assert "test-model" in repr(built)


def test_a_missing_sdk_gives_the_install_hint(keys, monkeypatch, server):
    monkeypatch.setitem(sys.modules, "anthropic", None)  # makes `import anthropic` fail
    with pytest.raises(AutoFusionError, match=r"pip install 'autofusion\[llm\]'"):
        build("anthropic", server)


def test_a_connection_refused_is_retried_then_reported(keys):
    with FakeLLMServer() as gone:
        url = gone.base_url("openai")
    provider = make_provider(LLMSettings("openai", "m", base_url=url, max_retries=1), sleep=lambda s: None)
    with pytest.raises(ProviderError, match="gave up after 2 tries"):
        provider.complete(MESSAGES)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_key_never_reaches_the_logs_or_errors(provider, keys, server, caplog):
    caplog.set_level(logging.DEBUG)
    server.push(status(429, retry_after="1"), status(500), reply("ok"), status(401))
    built = build(provider, server)
    built.complete(MESSAGES)
    with pytest.raises(ProviderConfigError) as caught:
        built.complete(MESSAGES)
    assert "retry 1/5" in caplog.text  # our retry warnings were logged...
    assert keys[KEY_VAR[provider]] not in caplog.text  # ...and no log line (ours or the SDK's) has the key
    assert keys[KEY_VAR[provider]] not in str(caught.value)
