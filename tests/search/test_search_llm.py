"""`autofusion search --generator llm` against a local server speaking the OpenAI protocol."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from autofusion.cli import main
from autofusion.llm.fake_server import FakeLLMServer, FakeStep, reply, status

from helpers import CONCAT

KEY = "canary-fake-openai-key"


def module(width: int) -> str:
    return "Here is the module you asked for:\n\n```python\n" + CONCAT.replace("32", str(width)) + "```\nIt pools, then fuses."


BROKEN = "```python\nimport torch\nclass FusionModel(torch.nn.Module:\n    pass\n```"


@pytest.fixture
def llm_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("AUTOFUSION_HOME", str(tmp_path / "home"))
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('zoo = ["concat"]\nfinal_top_k = 1\nfinal_seeds = 1\n[train]\nepochs = 1\nthreads = 1\n')
    return cfg


def test_llm_search_retries_repairs_counts_tokens_and_never_stores_the_key(llm_env: Path, tmp_path: Path, tiny_task: Path) -> None:
    script = [
        status(429, retry_after="1"),  # rate limited: retried after the server's Retry-After
        reply(module(40), input_tokens=101, output_tokens=51),
        reply(BROKEN, input_tokens=102, output_tokens=52),  # rejected by the gate: a repair turn follows
        reply(module(48), input_tokens=103, output_tokens=53),
        status(500),  # server error: retried
        reply(module(56), input_tokens=104, output_tokens=54),
    ]
    run = tmp_path / "run"
    with FakeLLMServer(script) as server:
        code = main(["search", "--config", str(llm_env), "--task", str(tiny_task), "--budget", "3", "--generator", "llm",
                     "--provider", "openai", "--model", "fake-model", "--base-url", server.base_url("openai"), "--out", str(run)])
        assert code == 0
        requests = list(server.requests)
        n_before_resume = len(requests)
        # Resuming a finished run pays for nothing.
        assert main(["search", "--resume", str(run)]) == 0
        assert len(server.requests) == n_before_resume

    assert n_before_resume == 6
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_candidates"] == 3
    assert summary["llm"]["calls"] == 4  # successful replies; the 429 and 500 were retried inside one call each
    assert summary["llm"]["input_tokens"] == 101 + 102 + 103 + 104
    assert summary["llm"]["output_tokens"] == 51 + 52 + 53 + 54

    repair = requests[3].body["messages"]
    assert any("syntax" in m["content"].lower() and m["role"] == "user" for m in repair[1:]), repair
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in requests)

    db = sqlite3.connect(run / "run.db")
    origins = [o for o, in db.execute("SELECT origin FROM candidates WHERE proposal_index IS NOT NULL")]
    assert origins == ["llm:fake-model"] * 3
    for path in run.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_missing_key_is_a_clear_error_before_the_search(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_task: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("AUTOFUSION_HOME", str(tmp_path / "home"))
    code = main(["search", "--task", str(tiny_task), "--generator", "llm", "--provider", "openai", "--model", "gpt-x",
                 "--budget", "1", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_outage_fails_candidates_but_the_search_finishes(llm_env: Path, tmp_path: Path, tiny_task: Path) -> None:
    llm_env.write_text(llm_env.read_text() + "[llm]\nmax_retries = 1\n")
    run = tmp_path / "run"
    with FakeLLMServer([], default=FakeStep(kind="status", status=503)) as server:
        code = main(["search", "--config", str(llm_env), "--task", str(tiny_task), "--budget", "2", "--generator", "llm",
                     "--provider", "openai", "--model", "m", "--base-url", server.base_url("openai"), "--out", str(run)])
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_candidates"] == 2 and summary["n_failed"] == 2
    assert summary["best"]["origin"] == "zoo:concat"
