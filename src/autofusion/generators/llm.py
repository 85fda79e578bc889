"""The LLM generator: prompt an LLM for a FusionModel, extract the code, repair it, account for it.

`LLMGenerator.generate` renders the prompt from the request (task contract, bridge instruction,
parents, history, scores to beat) with the templates in `prompts/`, asks the provider, extracts the
module, and, when the search's `validate` callback rejects it, spends up to `repair_turns` more
replies in the same conversation quoting the exact error. Every call goes to the `CallLog` (and the
optional cross-run `LLMCache`); a cached reply is reused instead of paid for. `max_llm_calls` /
`max_llm_tokens` are enforced here: when spent, `LLMBudgetExhausted` is raised.

`MixedGenerator` routes each request to the LLM generator or another generator (the offline
synthesizer) in a set ratio, deterministically from the request seed.

This file never runs candidate code (that is `validate`'s job) and never talks HTTP (providers do).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import replace
from typing import Sequence

from autofusion.errors import ConfigError
from autofusion.generators.base import (
    Generated,
    GenerationFailed,
    GenerationStopped,
    GenerationRequest,
    Generator,
    Validator,
)
from autofusion.generators.extract import Extraction, ExtractStatus, extract_code
from autofusion.generators.prompts import build_messages, gist, quote_untrusted, render_prompt, summarize_failures
from autofusion.llm.base import Completion, LLMProvider, Message, ProviderError
from autofusion.llm.calls import CallLog, LLMAccounting, LLMCall, cache_key, messages_json, prompt_hash
from autofusion.llm.settings import LLMSettings, make_provider, settings_from_dict

log = logging.getLogger(__name__)

__all__ = ["LLMBudgetExhausted", "LLMGenerator", "LLMSettings", "MixedGenerator", "make_provider", "settings_from_dict"]


class LLMBudgetExhausted(GenerationStopped):
    """`max_llm_calls` or `max_llm_tokens` is spent: the search should stop asking the LLM."""


class LLMGenerator(Generator):
    """Writes candidates with an LLM; see the module docstring."""

    name = "llm"

    def __init__(
        self,
        settings: LLMSettings,
        provider: LLMProvider | None = None,
        *,
        call_log: CallLog | None = None,
        cache: CallLog | None = None,
        accounting: LLMAccounting | None = None,
    ) -> None:
        self.settings = settings
        self.provider = provider if provider is not None else make_provider(settings)
        self.call_log = call_log
        self.cache = cache
        self.accounting = accounting or LLMAccounting(settings.price_per_mtok_in, settings.price_per_mtok_out)
        self._lock = threading.Lock()
        self._n_asked: dict[str, int] = {}  # prompt hash -> samples asked in this run
        self._n_paid_started = self.accounting.calls  # a pre-filled accounting (resumed run) counts

    @property
    def origin(self) -> str:
        return f"llm:{self.settings.model}"

    def usage(self) -> dict[str, object]:
        """summary.json's `llm` block: calls, tokens, cost (None without a price table)."""
        return self.accounting.summary()

    def generate(self, request: GenerationRequest, validate: Validator | None = None) -> Generated:
        messages = build_messages(request)
        n_attempts = 1 + self.settings.repair_turns
        failures: list[str] = []
        for attempt in range(1, n_attempts + 1):
            reply = self._ask(messages, request, attempt)
            extraction = extract_code(reply.text, reply.finish_reason)
            if extraction.ok:
                assert extraction.code is not None
                error = validate(extraction.code) if validate is not None else None
                if error is None:
                    notes = f"{attempt} repl{'y' if attempt == 1 else 'ies'}; {extraction.reason}"
                    if failures:
                        notes += "; repaired after: " + " | ".join(gist(f)[:120] for f in failures)
                    return Generated(code=extraction.code, origin=self.origin, notes=notes, attempts=attempt)
                failures.append(error)
            else:
                failures.append(f"{extraction.status.value}: {extraction.reason}")
            if attempt < n_attempts:
                messages = [*messages, *self._repair_turn(reply, extraction, failures, attempt, n_attempts)]
        last = gist(failures[-1])[:300]
        raise GenerationFailed(f"no valid module after {n_attempts} LLM replies; last problem: {last}")

    def _repair_turn(self, reply: Completion, extraction: Extraction, failures: list[str], attempt: int,
                     n_attempts: int) -> list[Message]:
        """The assistant's failed reply and the user's follow-up quoting what went wrong."""
        earlier = summarize_failures(failures[:-1])
        if extraction.status is ExtractStatus.TRUNCATED:
            follow_up = render_prompt("truncated", attempt=attempt, max_attempts=n_attempts,
                                      max_tokens=self.settings.max_tokens, earlier_failures=earlier)
            # The cut-off text would only cost input tokens; the model is asked for a shorter one.
            said = f"(reply cut off at the token limit after {reply.output_tokens} tokens; omitted)"
            return [Message("assistant", said), Message("user", follow_up)]
        # Checker output is untrusted (it echoes candidate code); our own extraction notes are not.
        error = quote_untrusted(failures[-1]) if extraction.ok else extraction.reason
        follow_up = render_prompt("repair", attempt=attempt, max_attempts=n_attempts, error=error,
                                  earlier_failures=earlier)
        return [Message("assistant", reply.text), Message("user", follow_up)]

    # --- one call: cache, budget, provider, record ---------------------------------------------
    def _ask(self, messages: Sequence[Message], request: GenerationRequest, attempt: int) -> Completion:
        s = self.settings
        digest = prompt_hash(messages)
        with self._lock:
            sample_index = self._n_asked.get(digest, 0)
            self._n_asked[digest] = sample_index + 1
        key = cache_key(provider=s.provider, model=s.model, base_url=s.base_url, temperature=s.temperature,
                        max_tokens=s.max_tokens, messages=messages, sample_index=sample_index)
        index = request.context.get("proposal_index")
        base = LLMCall(key=key, prompt_hash=digest, provider=self.provider.name, model=s.model, reply=None,
                       attempt=attempt, request_seed=request.seed, operator=request.operator,
                       proposal_index=index if isinstance(index, int) else None, messages=messages_json(messages))
        hit = self._lookup(key)
        if hit is not None:
            self._record(replace(base, reply=hit.reply, finish_reason=hit.finish_reason, cached=True,
                                 cost_usd=0.0 if self._priced else None, created_at=time.time()))
            return Completion(text=hit.reply or "", model=hit.model, input_tokens=0, output_tokens=0,
                              latency_s=0.0, finish_reason=hit.finish_reason)
        self._reserve_paid_call()
        try:
            reply = self.provider.complete(messages, temperature=s.temperature, max_tokens=s.max_tokens)
        except ProviderError as exc:
            self._record(replace(base, error=str(exc), created_at=time.time()))
            raise GenerationFailed(f"LLM call to {self.provider.name}:{s.model} failed: {exc}") from exc
        self._record(replace(base, model=reply.model, reply=reply.text, input_tokens=reply.input_tokens,
                             output_tokens=reply.output_tokens, latency_s=reply.latency_s,
                             finish_reason=reply.finish_reason, n_retries=reply.n_retries,
                             cost_usd=self._cost(reply), created_at=time.time()))
        return reply

    @property
    def _priced(self) -> bool:
        return self.settings.price_per_mtok_in is not None or self.settings.price_per_mtok_out is not None

    def _cost(self, reply: Completion) -> float | None:
        if not self._priced:
            return None
        s = self.settings
        paid_in = reply.input_tokens * (s.price_per_mtok_in or 0.0)
        return (paid_in + reply.output_tokens * (s.price_per_mtok_out or 0.0)) / 1e6

    def _lookup(self, key: str) -> LLMCall | None:
        for sink in (self.call_log, self.cache):
            hit = sink.lookup(key) if sink is not None else None
            if hit is not None and hit.ok:
                return hit
        return None

    def _reserve_paid_call(self) -> None:
        s = self.settings
        with self._lock:
            if s.max_llm_calls is not None and self._n_paid_started >= s.max_llm_calls:
                raise LLMBudgetExhausted(f"LLM call budget spent: {self._n_paid_started} of max_llm_calls="
                                         f"{s.max_llm_calls}; raise it or continue with the synthesizer")
            if s.max_llm_tokens is not None and self.accounting.tokens >= s.max_llm_tokens:
                raise LLMBudgetExhausted(f"LLM token budget spent: {self.accounting.tokens} of max_llm_tokens="
                                         f"{s.max_llm_tokens}; raise it or continue with the synthesizer")
            self._n_paid_started += 1

    def _record(self, call: LLMCall) -> None:
        self.accounting.add(call)
        for sink in (self.call_log, self.cache):
            if sink is not None:
                sink.record(call)


class MixedGenerator(Generator):
    """Sends a share `llm_ratio` of requests to `llm`, the rest to `other`, by request seed.

    Once the LLM budget is spent (`LLMBudgetExhausted`), every later request goes to `other`, so a
    mixed search keeps going on the synthesizer alone.
    """

    name = "mixed"

    def __init__(self, llm: Generator, other: Generator, llm_ratio: float = 0.5) -> None:
        if not 0.0 <= llm_ratio <= 1.0:
            raise ConfigError(f"llm_ratio={llm_ratio!r} must be between 0 and 1 (e.g. --llm-ratio 0.5)")
        self.llm = llm
        self.other = other
        self.llm_ratio = llm_ratio
        self.llm_exhausted = False

    def route(self, request: GenerationRequest) -> Generator:
        """The generator this request goes to (the same for the same seed, whatever came before)."""
        draw = random.Random(f"autofusion-mixed:{request.seed}").random()
        return self.llm if draw < self.llm_ratio and not self.llm_exhausted else self.other

    def generate(self, request: GenerationRequest, validate: Validator | None = None) -> Generated:
        chosen = self.route(request)
        if chosen is not self.llm:
            return self.other.generate(request, validate)
        try:
            return self.llm.generate(request, validate)
        except LLMBudgetExhausted as exc:
            self.llm_exhausted = True
            log.warning("%s; the mixed generator continues with %s only", exc, self.other.name)
            return self.other.generate(request, validate)
