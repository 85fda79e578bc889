"""API keys from the environment and lazy SDK imports, each with an error that says the fix.

Keys are read only here, only from environment variables, and are returned to the provider that
hands them to its SDK client; they are never logged, stored in settings or put in a message.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Mapping, Sequence
from urllib.parse import urlparse

from autofusion.errors import AutoFusionError

INSTALL_HINT = "pip install 'autofusion[llm]'"
# Sent to a local OpenAI-compatible server (vLLM, Ollama, llama.cpp) that wants no key.
PLACEHOLDER_KEY = "no-key-needed"


def import_sdk(module: str, package: str) -> ModuleType:
    """Import an optional provider SDK, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise AutoFusionError(
            f"the {package!r} package is needed for this LLM provider but is not installed "
            f"({exc}); install it with: {INSTALL_HINT}"
        ) from None


def api_key_from_env(
    provider: str,
    names: Sequence[str],
    *,
    optional: bool = False,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The first non-empty variable of `names`; a missing key raises unless `optional`."""
    env = os.environ if environ is None else environ
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    if optional:
        return None
    wanted = " or ".join(names)
    raise AutoFusionError(
        f"no API key for the {provider} provider: set {wanted} in the environment "
        f"(e.g. `export {names[0]}=...`), or choose another --generator/--provider"
    )


def is_local_endpoint(base_url: str | None, official_host: str) -> bool:
    """True when `base_url` points somewhere other than the provider's official host."""
    if not base_url:
        return False
    host = (urlparse(base_url).hostname or "").lower()
    return host != official_host and not host.endswith("." + official_host)
