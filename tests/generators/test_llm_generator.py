"""The LLM generator: repair turns, truncation, budgets, cache reuse, accounting, mixed routing."""

from __future__ import annotations

import json
import traceback
from typing import Sequence

import pytest
import torch

from autofusion.generators.base import Generated, GenerationFailed, GenerationRequest, Generator, Parent
from autofusion.generators.llm import LLMBudgetExhausted, LLMGenerator, MixedGenerator
from autofusion.llm import Completion, InMemoryCallLog, LLMCache, LLMProvider, LLMSettings, Message, ProviderError
from autofusion.llm.fake_server import FakeLLMServer, reply, status
from autofusion.tasks.format import TaskSpec

TASK = TaskSpec(name="toy", num_classes=3, modalities={"image": (5, 8), "text": (6,)})
GOOD = '''import torch
import torch.nn as nn


class FusionModel(nn.Module):
    def __init__(self, input_shapes, num_classes):
        super().__init__()
        self.head = nn.Linear(input_shapes["image"][-1] + input_shapes["text"][-1], num_classes)

    def forward(self, image, text, image_mask=None, **_):
        return self.head(torch.cat([image.mean(1), text], dim=-1))
'''
WRONG_SHAPE = GOOD.replace("num_classes)\n", "num_classes + 1)\n", 1)
SYNTAX_ERROR = GOOD.replace("def forward(self,", "def forward(self")


def smoke_validate(code: str) -> str | None:
    """A small stand-in for the gate: compile, build, run forward, check the logits' shape."""
    try:
        namespace: dict[str, object] = {}
        exec(compile(code, "<candidate>", "exec"), namespace)
        model = namespace["FusionModel"](dict(TASK.modalities), TASK.num_classes)
        out = model(image=torch.randn(2, 5, 8), text=torch.randn(2, 6))
        if tuple(out.shape) != (2, TASK.num_classes):
            return f"ShapeError: logits have shape {tuple(out.shape)}, expected (2, {TASK.num_classes})"
    except Exception:  # noqa: BLE001 - the validator reports any fault as text
        return traceback.format_exc()
    return None


def fenced(code: str) -> str:
    return f"Here is a mean-pool fusion.\n```python\n{code}```\nHope it helps."


def request(seed: int = 0, **kw: object) -> GenerationRequest:
    fields: dict[str, object] = {"operator": "fresh", "family": None, "instruction": "Write a simple baseline."}
    return GenerationRequest(task=TASK, seed=seed, **{**fields, **kw})  # type: ignore[arg-type]


class ScriptedProvider(LLMProvider):
    """A provider that answers from a list and records the conversations it was sent."""

    name = "scripted"

    def __init__(self, replies: Sequence[str | Completion | Exception], model: str = "scripted-1") -> None:
        super().__init__(model, sleep=lambda s: None)
        self.replies = list(replies)
        self.seen: list[list[Message]] = []

    def _send(self, messages, *, temperature, max_tokens):
        self.seen.append(list(messages))
        item = self.replies.pop(0)
        if isinstance(item, Exception):
            raise item
        if isinstance(item, Completion):
            return item
        return Completion(text=item, model=self.model, input_tokens=100, output_tokens=50, latency_s=0.0,
                          finish_reason="stop")

    def _classify(self, exc):
        return exc if isinstance(exc, ProviderError) else ProviderError(str(exc), retryable=False)


def settings(**kw: object) -> LLMSettings:
    return LLMSettings("openai", "scripted-1", **kw)  # type: ignore[arg-type]


def test_a_good_first_reply_is_returned_with_origin_and_one_attempt():
    provider = ScriptedProvider([fenced(GOOD)])
    out = LLMGenerator(settings(), provider).generate(request(), smoke_validate)
    assert out.code == GOOD and out.origin == "llm:scripted-1" and out.attempts == 1
    assert len(provider.seen) == 1


def test_a_rejected_reply_is_repaired_in_the_same_conversation_quoting_the_error():
    provider = ScriptedProvider([fenced(WRONG_SHAPE), fenced(SYNTAX_ERROR), fenced(GOOD)])
    log = InMemoryCallLog()
    out = LLMGenerator(settings(), provider, call_log=log).generate(request(), smoke_validate)
    assert out.code == GOOD and out.attempts == 3
    third = provider.seen[2]
    assert [m.role for m in third] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert third[2].content == fenced(WRONG_SHAPE) and third[4].content == fenced(SYNTAX_ERROR)
    assert "logits have shape (2, 4), expected (2, 3)" in third[3].content
    assert "SyntaxError" in third[5].content
    assert "<untrusted-data>" in third[5].content
    assert "attempt 1" in third[5].content and "(2, 4)" in third[5].content  # earlier failure listed
    assert [c.attempt for c in log.calls] == [1, 2, 3]


def test_repairs_are_bounded_and_then_generation_fails():
    provider = ScriptedProvider([fenced(WRONG_SHAPE)] * 3)
    generator = LLMGenerator(settings(repair_turns=1), provider)
    with pytest.raises(GenerationFailed, match="after 2 LLM replies.*ShapeError"):
        generator.generate(request(), smoke_validate)
    assert len(provider.seen) == 2 and generator.usage()["calls"] == 2


def test_quoted_error_text_is_truncated():
    huge = "E" * 10_000
    provider = ScriptedProvider([fenced(GOOD), fenced(GOOD)])
    verdicts = iter([huge, None])
    LLMGenerator(settings(), provider).generate(request(), lambda code: next(verdicts))
    follow_up = provider.seen[1][-1].content
    assert "E" * 2000 in follow_up and "E" * 2001 not in follow_up
    assert "8000 more characters cut" in follow_up


def test_a_truncated_reply_is_not_passed_on_and_a_shorter_one_is_asked_for():
    cut = Completion(text=fenced(GOOD)[:120], model="scripted-1", input_tokens=10, output_tokens=4096,
                     latency_s=0.0, finish_reason="length")
    provider = ScriptedProvider([cut, fenced(GOOD)])
    checked: list[str] = []
    out = LLMGenerator(settings(), provider).generate(request(), lambda c: checked.append(c) or None)
    assert out.attempts == 2 and checked == [GOOD]  # the cut-off code never reached the validator
    follow_up = provider.seen[1][-1].content
    assert "cut off" in follow_up and "4096" in follow_up and "shorter" in follow_up


def test_a_reply_without_code_is_repaired():
    provider = ScriptedProvider(["I would use cross-attention.", fenced(GOOD)])
    out = LLMGenerator(settings(), provider).generate(request(), smoke_validate)
    assert out.attempts == 2 and "FusionModel" in provider.seen[1][-1].content


def test_without_a_validator_the_first_extracted_code_is_returned():
    out = LLMGenerator(settings(), ScriptedProvider([fenced(WRONG_SHAPE)])).generate(request())
    assert out.code == WRONG_SHAPE and out.attempts == 1


def test_a_provider_failure_becomes_generation_failed_and_is_recorded():
    provider = ScriptedProvider([ProviderError("HTTP 400: context too long", retryable=False)])
    log = InMemoryCallLog()
    with pytest.raises(GenerationFailed, match="context too long"):
        LLMGenerator(settings(), provider, call_log=log).generate(request())
    (call,) = log.calls
    assert call.error and "context too long" in call.error and call.reply is None and not call.ok


def test_call_budget_raises_budget_exhausted_before_paying():
    provider = ScriptedProvider([fenced(GOOD), fenced(GOOD)])
    generator = LLMGenerator(settings(max_llm_calls=1), provider)
    generator.generate(request(seed=1))
    with pytest.raises(LLMBudgetExhausted, match="max_llm_calls=1"):
        generator.generate(request(seed=2))
    assert len(provider.seen) == 1
    assert issubclass(LLMBudgetExhausted, GenerationFailed)


def test_token_budget_counts_input_and_output_tokens():
    provider = ScriptedProvider([fenced(WRONG_SHAPE), fenced(GOOD)])  # 150 tokens per reply
    generator = LLMGenerator(settings(max_llm_tokens=150), provider)
    with pytest.raises(LLMBudgetExhausted, match="150 of max_llm_tokens=150"):
        generator.generate(request(), smoke_validate)  # the repair turn would exceed the budget
    assert generator.usage()["input_tokens"] == 100 and generator.usage()["output_tokens"] == 50


def test_asking_twice_for_the_same_prompt_gets_a_new_sample_not_the_cached_one():
    first, second = GOOD, GOOD.replace("mean(1)", "sum(1)")
    provider = ScriptedProvider([fenced(first), fenced(second)])
    log = InMemoryCallLog()
    generator = LLMGenerator(settings(), provider, call_log=log)
    a, b = generator.generate(request()), generator.generate(request())
    assert (a.code, b.code) == (first, second)
    assert log.calls[0].prompt_hash == log.calls[1].prompt_hash and log.calls[0].key != log.calls[1].key


def test_a_rerun_with_the_same_cache_reuses_replies_without_paying(tmp_path):
    cache_path = tmp_path / "llm_cache.db"
    paid = LLMGenerator(settings(), ScriptedProvider([fenced(WRONG_SHAPE), fenced(GOOD)]),
                        cache=LLMCache(cache_path))
    first = paid.generate(request(seed=5), smoke_validate)
    rerun_provider = ScriptedProvider([])  # would fail if asked
    rerun_log = InMemoryCallLog()
    rerun = LLMGenerator(settings(), rerun_provider, call_log=rerun_log, cache=LLMCache(cache_path))
    second = rerun.generate(request(seed=5), smoke_validate)
    assert second.code == first.code and second.attempts == 2
    assert rerun_provider.seen == []
    assert [c.cached for c in rerun_log.calls] == [True, True]
    assert rerun.usage()["calls"] == 0 and rerun.usage()["cached_calls"] == 2
    assert len(LLMCache(cache_path)) == 2  # cached hits are not stored twice


def test_accounting_and_cost_for_the_summary():
    provider = ScriptedProvider([fenced(WRONG_SHAPE), fenced(GOOD)])
    generator = LLMGenerator(settings(price_per_mtok_in=2.0, price_per_mtok_out=10.0), provider)
    generator.generate(request(), smoke_validate)
    usage = generator.usage()
    assert usage["calls"] == 2 and usage["input_tokens"] == 200 and usage["output_tokens"] == 100
    assert usage["cost_usd"] == pytest.approx((200 * 2.0 + 100 * 10.0) / 1e6)


def test_end_to_end_through_the_openai_sdk_and_a_local_server(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "e2e-fake-secret-key-42")
    history = [{"id": 3, "summary": "gated concat", "val_accuracy": 0.61},
               {"id": 4, "summary": "bilinear", "error": "RuntimeError: mat1 and mat2 shapes cannot be multiplied"}]
    req = request(operator="crossover", parents=(Parent(3, GOOD, val_accuracy=0.61), Parent(4, WRONG_SHAPE)),
                  context={"history": history, "best_val_accuracy": 0.61, "max_params": 50000})
    script = [status(429, retry_after="1"), reply(fenced(WRONG_SHAPE), input_tokens=900, output_tokens=120),
              status(500), reply(fenced(GOOD), input_tokens=1100, output_tokens=130)]
    log = InMemoryCallLog()
    with FakeLLMServer(script) as server:
        s = LLMSettings("openai", "qwen-coder", base_url=server.base_url("openai"), max_llm_calls=5)
        generator = LLMGenerator(s, call_log=log, cache=LLMCache(tmp_path / "cache.db"))
        generator.provider._sleep = lambda seconds: None  # no real backoff in tests
        out = generator.generate(req, smoke_validate)
    assert out.code == GOOD and out.origin == "llm:qwen-coder" and out.attempts == 2
    assert generator.usage()["input_tokens"] == 2000 and generator.usage()["output_tokens"] == 250
    first_prompt = server.requests[1].body["messages"][1]["content"]
    assert "#3" in first_prompt and "#4" in first_prompt and "50,000" in first_prompt
    assert "mat1 and mat2" in first_prompt and "0.6100" in first_prompt
    repair = server.requests[3].body["messages"][-1]["content"]
    assert "logits have shape (2, 4), expected (2, 3)" in repair
    assert [c.n_retries for c in log.calls] == [1, 1]
    everything_recorded = json.dumps([c.to_json() for c in log.calls]) + repr(generator) + repr(generator.provider)
    assert "e2e-fake-secret-key-42" not in everything_recorded
    assert b"e2e-fake-secret-key" not in (tmp_path / "cache.db").read_bytes()
    assert b"logits have shape" in (tmp_path / "cache.db").read_bytes()  # the cache does hold the calls
    assert all(r.headers["authorization"] == "Bearer e2e-fake-secret-key-42" for r in server.requests)


class Constant(Generator):
    def __init__(self, name: str) -> None:
        self.name = name
        self.n_calls = 0

    def generate(self, request, validate=None):
        self.n_calls += 1
        return Generated(code=f"# {self.name}", origin=self.name)


class Exhausted(Constant):
    def generate(self, request, validate=None):
        self.n_calls += 1
        raise LLMBudgetExhausted("spent")


def test_mixed_routes_deterministically_by_seed_in_the_given_ratio():
    llm, synth = Constant("llm"), Constant("synth")
    mixed = MixedGenerator(llm, synth, llm_ratio=0.3)
    origins = [mixed.generate(request(seed=s)).origin for s in range(400)]
    assert mixed.name == "mixed"
    assert 0.22 < origins.count("llm") / 400 < 0.38
    again = MixedGenerator(Constant("llm"), Constant("synth"), llm_ratio=0.3)
    assert [again.generate(request(seed=s)).origin for s in reversed(range(400))] == origins[::-1]
    assert {MixedGenerator(llm, synth, 0.0).route(request(seed=s)).name for s in range(50)} == {"synth"}
    assert {MixedGenerator(llm, synth, 1.0).route(request(seed=s)).name for s in range(50)} == {"llm"}


def test_mixed_falls_back_to_the_other_generator_once_the_llm_budget_is_spent():
    llm, synth = Exhausted("llm"), Constant("synth")
    mixed = MixedGenerator(llm, synth, llm_ratio=1.0)
    assert [mixed.generate(request(seed=s)).origin for s in range(3)] == ["synth"] * 3
    assert llm.n_calls == 1 and mixed.llm_exhausted


def test_mixed_refuses_a_ratio_outside_zero_to_one():
    from autofusion.errors import ConfigError

    with pytest.raises(ConfigError, match="llm_ratio=1.5"):
        MixedGenerator(Constant("llm"), Constant("synth"), llm_ratio=1.5)
