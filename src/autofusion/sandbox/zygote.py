"""The zygote: a persistent, pre-warmed process that forks one sandboxed child per candidate.

Started by `sandbox.pool.Sandbox` with a scrubbed environment. It imports torch once, loads the
task's inputs once (train with labels; val and test *without* labels — they never enter this
process), then waits for jobs on its control socket. For each job it forks a child that isolates
itself (`isolation.py`, `harden.py`), receives the candidate's code over its own socket and runs the
proxy trainer. The zygote itself never executes candidate code, so it stays clean; a child is never
reused. When a child exits, the zygote kills whatever is left in its process group, removes its
scratch directory and reports the exit status to the parent.

A job does not wait for a fork: the zygote keeps one *spare* child, forked ahead of time. It runs a
little trusted code (`trainer.prefault`) to take its copy-on-write page faults early (not when the
sandbox says every core is busy: then it only adds CPU time, ~15 ms per child), applies every
layer a fresh child would (the zygote was started with the sandbox's layers, `--layers`), and
blocks until the zygote hands it a job: then it applies the job's resource limits and runs it; no
candidate code has run in it before. The zygote forks the next spare right after handing one out,
while the job runs; a job whose layers differ, or that finds no live spare, gets a child forked for
it as before. This takes ~0.04 s off every candidate and every replay (`benchmarks/overhead.py`).

Usage (internal): python -m autofusion.sandbox.zygote --task DIR --control-fd N [--layers JSON] [--no-prefault]
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
from autofusion.evaluation.trainer import WorkerData, prefault, replay_job, run_job, warm_up
from autofusion.sandbox import harden, hugepages, isolation, wire
from autofusion.tasks.format import load_inputs, read_spec

CODE_WAIT_S = 30.0
SPARE_ACK_S = 10.0  # how long the zygote waits for a spare to take a job before forking instead


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


def _isolate(scratch: str, keep_fds: set[int], options: dict[str, Any]) -> list[str]:
    """Every layer but the resource limits: the process model (`isolation.py`), then the kernel
    layers (`harden.py`)."""
    active = isolation.isolate(scratch, keep_fds, bool(options.get("require_network_isolation", False)))
    return active + harden.harden(options.get("hardening", {}), scratch)


def _child(job_fd: int, scratch: str, job: dict[str, Any], data: WorkerData, active: list[str] | None = None,
           mapped_bytes: int | None = None) -> None:
    """Runs in the job's child (forked for it, or a spare already isolated: `active`, with what it
    mapped before /proc was hidden from it: `mapped_bytes`); never returns."""
    code = 0
    try:
        sock = socket.socket(fileno=job_fd)
        settings = TrainSettings.from_dict(job["settings"])
        if active is None:
            mapped_bytes = isolation.vm_size_bytes()  # before Landlock hides /proc
            active = _isolate(scratch, {job_fd}, job)
        limits = isolation.Limits(max_memory_mb=settings.max_memory_mb, cpu_seconds=int(settings.timeout_s * max(1, settings.threads)) + 5)
        active = active + isolation.apply_limits(limits, mapped_bytes)
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


def _spare(sock: socket.socket, scratch: str, data: WorkerData, options: dict[str, Any], warm: bool) -> None:
    """Runs in a spare child; never returns. Warm up (if `warm`) and isolate (every layer but the
    job's resource limits), wait for a job, then become its child."""
    code = 0
    try:
        isolation.die_with_parent()
        isolation.close_other_fds({sock.fileno()})  # not the zygote's control socket: its EOF tells the parent the zygote died
        if warm:
            prefault()  # trusted code, before the layers (it reads nothing new)
        mapped = isolation.vm_size_bytes()
        active = _isolate(scratch, {sock.fileno()}, options)
        msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 1)
        if not msg or not fds:
            os._exit(0)  # the zygote is gone or shutting down
        sock.send(b"1")  # taken: the zygote need not fork for this job
        sock.close()
        _child(fds[0], scratch, json.loads(msg), data, active, mapped)
    except BaseException:  # noqa: BLE001 - a spare must never fall back into the zygote's loop
        code = 3
    finally:
        os._exit(code)


class Zygote:
    def __init__(self, ctrl: socket.socket, data: WorkerData, options: dict[str, Any], prefault: bool = True) -> None:
        self.ctrl = ctrl
        self.data = data
        self.options = options  # {"hardening": ..., "require_network_isolation": ...}: how spares isolate
        self.prefault = prefault  # spares take their page faults early: worth it only with a core to spare
        self.children: dict[int, tuple[str, str]] = {}  # pid -> (job id, scratch dir)
        self.spare: tuple[int, socket.socket, str] | None = None  # (pid, its socket, its scratch dir)
        self.collapser = hugepages.Collapser()  # cheaper forks, done while nothing waits

    def serve(self) -> None:
        _send_ctrl(self.ctrl, {"type": "ready", "pid": os.getpid()})
        self._fork_spare()
        try:
            while True:
                ready, _, _ = select.select([self.ctrl], [], [], 0.0 if self.collapser.due() else 0.05)
                if not ready:
                    self.collapser.step()
                else:  # a waiting job goes before reaping (the last job's children exit as the next one comes)
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
                        self._start(job, fds[0])
                self._reap()
                if self.spare is None:
                    self._fork_spare()
        finally:
            self._kill_all()

    def _start(self, job: dict[str, Any], job_fd: int) -> None:
        """Hand the job to the spare child, or fork a child for it if there is none."""
        taken = self._hand_to_spare(job, job_fd) if self.spare is not None and self._same_layers(job) else None
        if taken is not None:
            pid, scratch = taken
        else:
            scratch = tempfile.mkdtemp(prefix="autofusion-job-")
            pid = os.fork()
            if pid == 0:
                _child(job_fd, scratch, job, self.data)
        os.close(job_fd)
        self.children[pid] = (str(job["job"]), scratch)
        _send_ctrl(self.ctrl, {"type": "started", "job": job["job"], "pid": pid})

    def _same_layers(self, job: dict[str, Any]) -> bool:
        return all(job.get(k) == v for k, v in self.options.items())

    def _hand_to_spare(self, job: dict[str, Any], job_fd: int) -> tuple[int, str] | None:
        """(pid, scratch dir) of the spare that took the job; None if it died or hangs (it is dropped)."""
        assert self.spare is not None
        pid, sock, scratch = self.spare
        try:
            socket.send_fds(sock, [json.dumps(job).encode()], [job_fd])
            sock.settimeout(SPARE_ACK_S)  # it may still be warming up or isolating itself
            taken = sock.recv(1) == b"1"
        except OSError:
            taken = False
        if not taken:
            self._drop_spare(alive=True)
            return None
        self.spare = None
        sock.close()
        return pid, scratch

    def _drop_spare(self, alive: bool) -> None:
        """Forget the spare child: kill and reap it unless it is already reaped, remove its scratch dir."""
        assert self.spare is not None
        pid, sock, scratch = self.spare
        self.spare = None
        sock.close()
        if alive:
            self._kill(pid)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        shutil.rmtree(scratch, ignore_errors=True)

    def _fork_spare(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        scratch = tempfile.mkdtemp(prefix="autofusion-job-")
        pid = os.fork()
        if pid == 0:
            ours.close()
            _spare(theirs, scratch, self.data, self.options, self.prefault)
        theirs.close()
        self.spare = (pid, ours, scratch)
        _send_ctrl(self.ctrl, {"type": "spare", "pid": pid})

    @staticmethod
    def _kill(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap(self) -> None:
        while self.children or self.spare is not None:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare[0]:  # died before it had a job
                self._drop_spare(alive=False)
                continue
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
        spare = {self.spare[0]} if self.spare is not None else set()
        harden.kill_descendants_of_job(pid, (set(self.children) | spare) - {pid})
        _, scratch = self.children.get(pid, ("", ""))
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    def _kill_all(self) -> None:
        if self.spare is not None:
            self._drop_spare(alive=True)
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
    parser.add_argument("--layers", default="{}", help="JSON: hardening and require_network_isolation, as in a job")
    parser.add_argument("--no-prefault", action="store_true", help="spares skip `trainer.prefault` (every core is busy)")
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
    layers = json.loads(args.layers)
    Zygote(ctrl, data, {"hardening": layers.get("hardening", {}),
                        "require_network_isolation": bool(layers.get("require_network_isolation", False))},
           prefault=not args.no_prefault).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
