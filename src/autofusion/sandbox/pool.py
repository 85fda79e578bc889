"""The trusted side of the sandbox: starts a zygote and opens one job channel per candidate.

`Sandbox(task_dir)` starts the zygote with a scrubbed environment (no API keys, no secrets: the
child's /proc/self/environ shows only what is listed in `SAFE_ENV`). `open_job()` hands the zygote
one end of a fresh socket pair; the zygote forks a child that talks to us directly over it. `kill()`
kills the child's whole process group. The sandbox never interprets candidate output itself: the
evaluator reads validated frames from the channel.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autofusion.errors import SandboxError
from autofusion.sandbox import wire
from autofusion.sandbox.harden import Hardening

if TYPE_CHECKING:  # a runtime import would be circular (evaluation imports this module)
    from autofusion.evaluation.protocol import TrainSettings

log = logging.getLogger(__name__)

SAFE_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
START_TIMEOUT_S = 120.0


def scrubbed_env(home: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in SAFE_ENV if k in os.environ}
    env.update(HOME=home, TMPDIR=home, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
    src = str(Path(__file__).resolve().parents[2])  # so the zygote imports this same package
    env["PYTHONPATH"] = src
    return env


@dataclass
class JobChannel:
    """One candidate's conversation with the trusted parent."""

    job_id: str
    pid: int
    sock: socket.socket
    sandbox: "Sandbox"
    protections: list[str] = field(default_factory=list)

    def send(self, header: dict[str, Any], array: Any = None) -> None:
        wire.send(self.sock, header, array)

    def recv(self, deadline: float, expect_shape: tuple[int, ...] | None = None, max_array_bytes: int = 256 << 20) -> wire.Frame:
        return wire.recv(self.sock, deadline=deadline, expect_shape=expect_shape, max_array_bytes=max_array_bytes)

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def exit_code(self, wait_s: float = 2.0) -> int | None:
        return self.sandbox.wait_exit(self.job_id, wait_s)

    def close(self) -> None:
        self.kill()
        self.sock.close()


class Sandbox:
    """A zygote for one task; thread-safe: several jobs may run at once."""

    def __init__(self, task_dir: str | Path, hardening: Hardening | dict[str, Any] | None = None,
                 require_network_isolation: bool = False, allow_weak: bool = False, spare_cores: bool = True) -> None:
        """`hardening` defaults to every kernel layer on; `allow_weak` lets candidates run on a
        host that lacks some required protection (see `harden.check_required`); `spare_cores`: the
        evaluations running at once leave a core idle, so work that shortens each one is worth its
        CPU time (the zygote's spares take their page faults ahead of their job, `sandbox/zygote.py`;
        the evaluator replays epochs while the candidate trains, `ProxyEvaluator`)."""
        self.task_dir = str(Path(task_dir).resolve())
        layers = hardening if isinstance(hardening, Hardening) else Hardening.from_dict(hardening)
        self.hardening = layers.to_dict()
        self.require_network_isolation = require_network_isolation
        self.allow_weak = allow_weak
        self.spare_cores = spare_cores
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._started: dict[str, int] = {}
        self._exits: dict[str, int] = {}
        self._ids = itertools.count()
        self._closed = False
        self.spare_pid: int | None = None
        self._start()

    def _start(self) -> None:
        self._home = tempfile.mkdtemp(prefix="autofusion-sandbox-")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ctrl = parent
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autofusion.sandbox.zygote", "--task", self.task_dir, "--control-fd", str(child.fileno()),
             "--layers", json.dumps({"hardening": self.hardening, "require_network_isolation": self.require_network_isolation}),
             *([] if self.spare_cores else ["--no-prefault"])],
            env=scrubbed_env(self._home), pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self._home)
        child.close()
        parent.settimeout(START_TIMEOUT_S)
        try:
            msg = json.loads(parent.recv(1 << 16) or b'{"type": "fatal", "error": "zygote exited"}')
        except (socket.timeout, json.JSONDecodeError) as exc:
            self.close()
            raise SandboxError(f"the evaluation worker did not start ({exc}); check that `python -m autofusion.sandbox.zygote` runs in this environment") from None
        if msg.get("type") != "ready":
            self.close()
            raise SandboxError(f"the evaluation worker could not load task {self.task_dir}: {msg.get('error')}")
        parent.settimeout(None)
        self._reader = threading.Thread(target=self._read_ctrl, name="zygote-ctrl", daemon=True)
        self._reader.start()

    def _read_ctrl(self) -> None:
        while True:
            try:
                raw = self._ctrl.recv(1 << 16)
            except OSError:
                raw = b""
            with self._cond:
                if not raw:
                    self._closed = True
                    self._cond.notify_all()
                    return
                msg = json.loads(raw)
                if msg.get("type") == "started":
                    self._started[str(msg["job"])] = int(msg["pid"])
                    if self.spare_pid == int(msg["pid"]):
                        self.spare_pid = None  # it has a job now; the zygote reports the next spare
                elif msg.get("type") == "spare":
                    self.spare_pid = int(msg["pid"])  # forked ahead of the next job; no job yet
                elif msg.get("type") == "exit":
                    self._exits[str(msg["job"])] = int(msg["code"])
                self._cond.notify_all()

    @property
    def alive(self) -> bool:
        return not self._closed and self.proc.poll() is None

    def open_job(self, settings: TrainSettings, smoke_only: bool = False, mode: str = "candidate") -> JobChannel:
        """A fresh child: `mode="candidate"` runs candidate code; `"replay"` replays a traced graph."""
        if not self.alive:
            raise SandboxError("the evaluation worker has exited; start a new Sandbox")
        job_id = f"j{next(self._ids)}"
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        msg = {"type": "job", "job": job_id, "settings": settings.to_dict(), "smoke_only": smoke_only, "mode": mode,
               "hardening": self.hardening, "require_network_isolation": self.require_network_isolation}
        with self._lock:
            socket.send_fds(self._ctrl, [json.dumps(msg).encode()], [theirs.fileno()])
        theirs.close()
        deadline = time.monotonic() + 30
        with self._cond:
            while job_id not in self._started:
                if self._closed or not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    ours.close()
                    raise SandboxError("the evaluation worker did not start the job")
            pid = self._started.pop(job_id)
        return JobChannel(job_id=job_id, pid=pid, sock=ours, sandbox=self)

    def wait_exit(self, job_id: str, wait_s: float) -> int | None:
        deadline = time.monotonic() + wait_s
        with self._cond:
            while job_id not in self._exits and not self._closed:
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    break
            return self._exits.pop(job_id, None)

    def close(self) -> None:
        """Stop the zygote; it kills every child it still has. Idempotent."""
        if self.proc.poll() is not None and self._ctrl.fileno() == -1:
            return
        try:
            with self._lock:
                self._ctrl.send(json.dumps({"type": "shutdown"}).encode())
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._ctrl.close()
        shutil.rmtree(self._home, ignore_errors=True)  # the zygote's HOME/TMPDIR (torch writes caches there)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
