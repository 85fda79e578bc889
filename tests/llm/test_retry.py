"""Backoff, Retry-After parsing and key redaction, without any server."""

from __future__ import annotations

import email.utils
import random
import time

from autofusion.llm import RetryPolicy, redact
from autofusion.llm.base import retry_after_s, status_error


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0)
    rng = random.Random(0)
    delays = [policy.delay_s(n, None, rng) for n in range(1, 7)]
    for n, delay in enumerate(delays, start=1):
        cap = min(8.0, 2 ** (n - 1))
        assert cap / 2 <= delay <= cap
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, not constant


def test_retry_after_is_honoured_but_never_shortened():
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=60.0)
    assert policy.delay_s(1, 12.0, random.Random(0)) == 12.0
    assert policy.delay_s(1, 120.0, random.Random(0)) == 120.0  # the server knows best
    assert 16 <= policy.delay_s(6, 0.5, random.Random(0)) <= 32  # our backoff when it is longer


def test_retry_after_headers_in_seconds_milliseconds_and_http_dates():
    assert retry_after_s({"retry-after": "7"}) == 7.0
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_s({"retry-after": date}) <= 31
    assert retry_after_s({"retry-after": "soon"}) is None and retry_after_s({}) is None


def test_which_statuses_are_retried():
    assert all(status_error(code, "x", None).retryable for code in (408, 429, 500, 502, 503, 529))
    assert not any(status_error(code, "x", None).retryable for code in (400, 401, 403, 404, 422))


def test_redact_removes_the_key_and_key_shaped_strings():
    text = "bad key sk-proj-abcdefghijklmnop and AIzaSyA1234567890123456789012345 and my-secret-value"
    clean = redact(text, ["my-secret-value"])
    assert "abcdefghijklmnop" not in clean and "AIzaSy" not in clean and "my-secret-value" not in clean
    assert clean.count("[redacted]") == 3
