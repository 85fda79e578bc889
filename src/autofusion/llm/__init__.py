"""LLM providers (OpenAI-compatible, Gemini, Anthropic) behind one interface, plus call records.

`make_provider(LLMSettings(...))` builds a provider; `provider.complete(messages)` returns a
`Completion`. SDKs are imported only when a provider is built. Calls are recorded as `LLMCall`s in a
`CallLog` (`InMemoryCallLog`, the SQLite `LLMCache`, or the run store). Prompting, code extraction
and repair live in `autofusion.generators.llm`, not here: providers never see a candidate.
"""

from autofusion.llm.base import (
    TRUNCATED_FINISH_REASONS,
    Completion,
    LLMProvider,
    Message,
    ProviderConfigError,
    ProviderError,
    RetryPolicy,
    redact,
)
from autofusion.llm.cache import LLMCache, autofusion_home, default_cache_path
from autofusion.llm.calls import CallLog, InMemoryCallLog, LLMAccounting, LLMCall, cache_key, prompt_hash
from autofusion.llm.keys import INSTALL_HINT, api_key_from_env
from autofusion.llm.settings import PROVIDERS, LLMSettings, make_provider, settings_from_dict

__all__ = [
    "INSTALL_HINT",
    "PROVIDERS",
    "TRUNCATED_FINISH_REASONS",
    "CallLog",
    "Completion",
    "InMemoryCallLog",
    "LLMAccounting",
    "LLMCache",
    "LLMCall",
    "LLMProvider",
    "LLMSettings",
    "Message",
    "ProviderConfigError",
    "ProviderError",
    "RetryPolicy",
    "api_key_from_env",
    "autofusion_home",
    "cache_key",
    "default_cache_path",
    "make_provider",
    "prompt_hash",
    "redact",
    "settings_from_dict",
]
