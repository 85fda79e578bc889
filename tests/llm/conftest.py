"""Fixtures for provider tests: fake API keys in the environment and a scripted local server."""

from __future__ import annotations

from typing import Iterator

import pytest

from autofusion.llm.fake_server import FakeLLMServer

KEYS = {
    "OPENAI_API_KEY": "fake-openai-key-for-tests",
    "ANTHROPIC_API_KEY": "fake-anthropic-key-for-tests",
    "GEMINI_API_KEY": "fake-gemini-key-for-tests",
}


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                 "ANTHROPIC_AUTH_TOKEN", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    return dict(KEYS)


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake
