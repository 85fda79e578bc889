"""The fake server on its own: scripts, unknown routes, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from autofusion.llm.fake_server import FakeLLMServer, FakeStep, load_script


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_exhausted_script_answers_500_and_unknown_routes_404():
    with FakeLLMServer() as server:
        code, body = post(f"{server.url}/v1/chat/completions", {"model": "m", "messages": []})
        assert code == 500 and "exhausted" in body["note"]
        assert post(f"{server.url}/v2/other", {})[0] == 404
        assert [r.protocol for r in server.requests] == ["openai", "unknown"]


def test_script_files_are_checked(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"kind": "status", "status": 429, "retry_after": "2"}, {"text": "hi"}]))
    assert load_script(good) == [FakeStep(kind="status", status=429, retry_after="2"), FakeStep(text="hi")]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"kind": "reply", "txt": "typo"}]))
    with pytest.raises(ValueError, match="txt"):
        load_script(bad)


def test_the_command_line_serves_a_script(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"text": "first", "input_tokens": 3, "output_tokens": 2}, {"text": "again"}]))
    proc = subprocess.Popen([sys.executable, "-m", "autofusion.llm.fake_server", "--port", "0",
                             "--script", str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        body = {"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
        code, first = post(f"{url}/v1/messages", body)
        assert code == 200 and first["content"][0]["text"] == "first"
        assert first["usage"] == {"input_tokens": 3, "output_tokens": 2} and first["stop_reason"] == "end_turn"
        for _ in range(2):  # the last step repeats
            assert post(f"{url}/v1/messages", body)[1]["content"][0]["text"] == "again"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
