"""A scripted local HTTP server that speaks the real wire protocol of OpenAI, Anthropic and Gemini.

Routes: `POST /v1/chat/completions` (OpenAI: `choices`, `usage`), `POST /v1/messages` (Anthropic:
`content`, `stop_reason`, `usage.input_tokens/output_tokens`), and
`POST /v1beta/models/{model}:generateContent` (Gemini: `candidates`, `usageMetadata`). Each
request takes the next `FakeStep` of the script (one queue for all routes): a reply (good code,
broken code, chatter, a truncated reply), an HTTP error (429 with Retry-After, 500...), a slow
reply that outlives the client's timeout, or malformed JSON. When the script runs out, the
`default` step answers (or HTTP 500 if there is none). Every request is recorded with its
headers and body so tests can check what the client sent.

It is a test and demo tool, bound to 127.0.0.1 only. Run it standalone with
`python -m autofusion.llm.fake_server --port P --script FILE` (FILE: a JSON list of steps).
It never checks keys; it records whatever was sent.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable

KINDS = ("reply", "status", "slow", "malformed")
# Our generic finish reasons -> how each protocol spells them.
_FINISH = {
    "openai": {"stop": "stop", "length": "length"},
    "anthropic": {"stop": "end_turn", "length": "max_tokens"},
    "gemini": {"stop": "STOP", "length": "MAX_TOKENS"},
}
_GEMINI_PATH = re.compile(r"^/v1(?:beta|alpha)?/models/([^/:]+):generateContent$")


@dataclass(frozen=True)
class FakeStep:
    """What the server does for one request."""

    kind: str = "reply"  # one of KINDS
    text: str = ""  # the reply text (kind "reply"; also what a "slow" reply finally sends)
    finish: str = "stop"  # "stop" or "length" (the token limit was hit)
    status: int = 200  # kind "status": the HTTP status to answer
    retry_after: str | None = None  # kind "status": the Retry-After header, e.g. "7"
    delay_s: float = 0.0  # kind "slow": wait this long before answering
    input_tokens: int | None = None  # default: ~ prompt characters / 4
    output_tokens: int | None = None  # default: ~ reply characters / 4

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fake step kind {self.kind!r}; choose one of {KINDS}")
        if self.finish not in ("stop", "length"):
            raise ValueError(f"fake step finish must be 'stop' or 'length', not {self.finish!r}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FakeStep:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fake step field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


def reply(text: str, **kw: Any) -> FakeStep:
    return FakeStep(kind="reply", text=text, **kw)


def status(code: int, retry_after: str | None = None) -> FakeStep:
    return FakeStep(kind="status", status=code, retry_after=retry_after)


@dataclass(frozen=True)
class RecordedRequest:
    protocol: str  # "openai", "anthropic", "gemini" or "unknown"
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # the parsed JSON body (None if unreadable)
    model: str | None
    step: FakeStep | None = field(default=None, compare=False)


def _count_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _prompt_text(protocol: str, body: dict[str, Any]) -> str:
    if protocol == "gemini":
        parts = [p.get("text", "") for c in body.get("contents", []) for p in c.get("parts", [])]
        system = body.get("systemInstruction") or body.get("system_instruction") or {}
        parts += [p.get("text", "") for p in system.get("parts", [])] if isinstance(system, dict) else []
        return "".join(parts)
    text = "".join(str(m.get("content", "")) for m in body.get("messages", []))
    system = body.get("system")
    return text + (system if isinstance(system, str) else "")


def _success_body(protocol: str, step: FakeStep, model: str, n: int, n_in: int, n_out: int) -> dict[str, Any]:
    finish = _FINISH[protocol][step.finish]
    if protocol == "openai":
        return {
            "id": f"chatcmpl-fake-{n}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": step.text},
                         "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
        }
    if protocol == "anthropic":
        return {
            "id": f"msg_fake_{n}", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": step.text}],
            "stop_reason": finish, "stop_sequence": None,
            "usage": {"input_tokens": n_in, "output_tokens": n_out},
        }
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": step.text}]},
                        "finishReason": finish, "index": 0}],
        "usageMetadata": {"promptTokenCount": n_in, "candidatesTokenCount": n_out,
                          "totalTokenCount": n_in + n_out},
        "modelVersion": model, "responseId": f"fake-{n}",
    }


def _error_body(protocol: str, code: int) -> dict[str, Any]:
    message = f"fake server: scripted HTTP {code}"
    if protocol == "anthropic":
        kind = "rate_limit_error" if code == 429 else "api_error"
        return {"type": "error", "error": {"type": kind, "message": message}}
    if protocol == "gemini":
        state = "RESOURCE_EXHAUSTED" if code == 429 else "INTERNAL"
        return {"error": {"code": code, "message": message, "status": state}}
    kind = "rate_limit_exceeded" if code == 429 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


class FakeLLMServer:
    """Start with `with FakeLLMServer(script) as server:`; point an SDK at `server.base_url(p)`."""

    def __init__(self, script: Iterable[FakeStep] = (), *, default: FakeStep | None = None,
                 port: int = 0) -> None:
        self._script = list(script)
        self.default = default
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, provider: str) -> str:
        """The base URL each SDK wants: OpenAI's includes /v1, the others add their own path."""
        return f"{self.url}/v1" if provider == "openai" else self.url

    def push(self, *steps: FakeStep) -> None:
        with self._lock:
            self._script.extend(steps)

    @property
    def n_pending(self) -> int:
        with self._lock:
            return len(self._script)

    def start(self) -> FakeLLMServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), name="fake-llm",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes "slow" handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_step(self) -> FakeStep | None:
        with self._lock:
            return self._script.pop(0) if self._script else self.default

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


def _handler_for(server: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass  # keep test output clean; requests are recorded instead

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            protocol, model = _route(self.path)
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            if protocol != "gemini" and isinstance(body, dict):
                model = body.get("model")
            step = server._next_step() if protocol != "unknown" else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            server._record(RecordedRequest(protocol, self.path, headers, body, model, step))
            if protocol == "unknown":
                return self._send(404, {"error": {"message": f"fake server: no route {self.path}"}})
            if step is None:
                return self._send(500, _error_body(protocol, 500) | {"note": "fake server script exhausted"})
            self._answer(protocol, step, body if isinstance(body, dict) else {}, model or "fake-model")

        def _answer(self, protocol: str, step: FakeStep, body: dict[str, Any], model: str) -> None:
            if step.kind == "status":
                extra = {"retry-after": step.retry_after} if step.retry_after is not None else {}
                return self._send(step.status, _error_body(protocol, step.status), extra)
            if step.kind == "malformed":
                return self._send_raw(200, b'{"choices": [ {"message": oops', "application/json")
            if step.kind == "slow" and server._stopping.wait(step.delay_s):
                return None
            n_in = step.input_tokens if step.input_tokens is not None else _count_tokens(_prompt_text(protocol, body))
            n_out = step.output_tokens if step.output_tokens is not None else _count_tokens(step.text)
            self._send(200, _success_body(protocol, step, model, len(server.requests), n_in, n_out))

        def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            self._send_raw(code, json.dumps(payload).encode("utf-8"), "application/json", headers)

        def _send_raw(self, code: int, data: bytes, content_type: str,
                      headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(code)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout); nothing to answer

    return Handler


def _route(path: str) -> tuple[str, str | None]:
    path = path.split("?", 1)[0]
    if path.endswith("/chat/completions"):
        return "openai", None
    if path == "/v1/messages":
        return "anthropic", None
    match = _GEMINI_PATH.match(path)
    if match:
        return "gemini", match.group(1)
    return "unknown", None


def load_script(path: str | Path) -> list[FakeStep]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: a fake-server script is a JSON list of steps, e.g. "
                         '[{"kind": "reply", "text": "..."}, {"kind": "status", "status": 429}]')
    return [FakeStep.from_json(item) for item in data]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autofusion.llm.fake_server", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--script", help="JSON list of steps; the last one repeats when the script runs out")
    args = parser.parse_args(argv)
    steps = load_script(args.script) if args.script else [reply("```python\n# no script given\n```")]
    server = FakeLLMServer(steps[:-1], default=steps[-1], port=args.port)
    print(f"fake LLM server on {server.url} (OpenAI base URL: {server.base_url('openai')})", flush=True)
    try:
        server.start()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
