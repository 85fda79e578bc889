"""The zygote: a persistent, pre-warmed process that forks one sandboxed child per candidate.

Started by `sandbox.pool.Sandbox` with a scrubbed environment. It imports torch once, loads the
task's inputs once (train with labels; val and test *without* labels — they never enter this
process), then waits for jobs on its control socket. For each job it forks a child that isolates
itself (`isolation.py`, `harden.py`), receives the candidate's code over its own socket and runs the
proxy trainer. The zygote itself never executes candidate code, so it stays clean; a child is never
reused. When a child exits, the zygote kills whatever is left in its process group, removes its
scratch directory and reports the exit status to the parent.

Usage (internal): python -m autofusion.sandbox.zygote --task DIR --control-fd N
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

import torch

from autofusion.evaluation.protocol import TrainSettings
from autofusion.evaluation.trainer import WorkerData, replay_job, run_job, warm_up
from autofusion.sandbox import harden, isolation, wire
from autofusion.tasks.format import load_inputs, read_spec

CODE_WAIT_S = 30.0


def load_worker_data(task_dir: str) -> WorkerData:
    spec = read_spec(task_dir)
    train = load_inputs(task_dir, "train", with_labels=True)
    evals = {s: load_inputs(task_dir, s, with_labels=False) for s in ("val", "test")}
    assert train.labels is not None
    return WorkerData(
        input_shapes=dict(spec.modalities),
        num_classes=spec.num_classes,
        train_inputs=train.inputs(),
        train_labels=train.labels,
        train_label_mask=train.label_mask,
        eval_inputs={s: sp.inputs() for s, sp in evals.items()},
        eval_label_masks={s: sp.label_mask for s, sp in evals.items()},
    )


def _send_ctrl(ctrl: socket.socket, msg: dict[str, Any]) -> None:
    ctrl.send(json.dumps(msg).encode())


def _child(job_fd: int, scratch: str, job: dict[str, Any], data: WorkerData) -> None:
    """Runs in the forked child; never returns."""
    code = 0
    try:
        sock = socket.socket(fileno=job_fd)
        settings = TrainSettings.from_dict(job["settings"])
        limits = isolation.Limits(max_memory_mb=settings.max_memory_mb, cpu_seconds=int(settings.timeout_s * max(1, settings.threads)) + 5)
        active = isolation.isolate(scratch, {job_fd}, limits, job.get("require_network_isolation", False))
        active += harden.harden(job.get("hardening", {}), scratch)
        torch.set_num_threads(settings.threads or 1)
        wire.send(sock, {"type": "hello", "protections": active})
        if job.get("mode") == "replay":  # trusted code on untrusted data: sandboxed all the same
            replay_job(data, settings, sock, time.monotonic() + settings.timeout_s)
        else:
            frame = wire.recv(sock, deadline=time.monotonic() + CODE_WAIT_S)
            run_job(str(frame.header["code"]), data, settings, sock, bool(job.get("smoke_only")))
    except BaseException:  # noqa: BLE001 - a child must never fall back into the zygote's loop
        code = 3
    finally:
        os._exit(code)


class Zygote:
    def __init__(self, ctrl: socket.socket, data: WorkerData) -> None:
        self.ctrl = ctrl
        self.data = data
        self.children: dict[int, tuple[str, str]] = {}  # pid -> (job id, scratch dir)

    def serve(self) -> None:
        _send_ctrl(self.ctrl, {"type": "ready", "pid": os.getpid()})
        try:
            while True:
                ready, _, _ = select.select([self.ctrl], [], [], 0.05)
                self._reap()
                if not ready:
                    continue
                try:
                    msg, fds, _, _ = socket.recv_fds(self.ctrl, 1 << 16, 1)
                except OSError:  # connection reset: the parent died
                    return
                if not msg:
                    return  # the parent is gone
                job = json.loads(msg)
                if job.get("type") == "shutdown":
                    return
                if job.get("type") == "job" and fds:
                    self._fork(job, fds[0])
        finally:
            self._kill_all()

    def _fork(self, job: dict[str, Any], job_fd: int) -> None:
        scratch = tempfile.mkdtemp(prefix="autofusion-job-")
        pid = os.fork()
        if pid == 0:
            _child(job_fd, scratch, job, self.data)
        os.close(job_fd)
        self.children[pid] = (str(job["job"]), scratch)
        _send_ctrl(self.ctrl, {"type": "started", "job": job["job"], "pid": pid})

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._cleanup(pid)
            job, _ = self.children.pop(pid, ("?", ""))
            exit_info = {"type": "exit", "job": job, "pid": pid,
                         "code": os.waitstatus_to_exitcode(status)}
            _send_ctrl(self.ctrl, exit_info)

    def _cleanup(self, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)  # daemons and orphans left in the child's group
        except (ProcessLookupError, PermissionError):
            pass
        harden.kill_descendants_of_job(pid, set(self.children) - {pid})
        _, scratch = self.children.get(pid, ("", ""))
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    def _kill_all(self) -> None:
        for pid in list(self.children):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 5
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.01)
        for pid in list(self.children):
            self._cleanup(pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autofusion-zygote")
    parser.add_argument("--task", required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # no OpenMP pool before fork: children build their own
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    ctrl = socket.socket(fileno=args.control_fd)
    try:
        data = load_worker_data(args.task)
    except Exception as exc:  # noqa: BLE001 - report why we could not start, then exit
        _send_ctrl(ctrl, {"type": "fatal", "error": f"{type(exc).__name__}: {exc}"})
        return 2
    warm_up()
    harden.prepare_zygote(args.task)
    Zygote(ctrl, data).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
