"""The sandbox's own housekeeping: the spare child that takes the next job, and nothing of a closed
sandbox left on disk or in the process table."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from autofusion.evaluation.protocol import TrainSettings
from autofusion.sandbox.harden import REQUIRED, Hardening
from autofusion.sandbox.pool import JobChannel, Sandbox
from helpers import CONCAT

SETTINGS = TrainSettings(epochs=1, timeout_s=20)


def _hello(ch: JobChannel) -> list[str]:
    frame = ch.recv(time.monotonic() + 20)
    assert frame.type == "hello"
    return list(frame.header["protections"])


def _spare(box: Sandbox, timeout_s: float = 20) -> int:
    deadline = time.monotonic() + timeout_s
    while box.spare_pid is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert box.spare_pid is not None, "the zygote reported no spare child"
    return box.spare_pid


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_job_goes_to_the_spare_already_isolated_and_a_new_spare_follows(shared_sandbox: Sandbox) -> None:
    spare = _spare(shared_sandbox)
    ch = shared_sandbox.open_job(SETTINGS, mode="replay")
    try:
        assert ch.pid == spare
        active = _hello(ch)
        assert set(REQUIRED) <= set(active), set(REQUIRED) - set(active)  # the same layers as a fresh child
        assert {"rlimit-memory", "rlimit-cpu"} <= set(active)  # limits applied once the job's settings came
        assert _spare(shared_sandbox) != spare
    finally:
        ch.close()


def test_a_spare_killed_from_outside_costs_no_job(shared_sandbox: Sandbox) -> None:
    os.kill(_spare(shared_sandbox), signal.SIGKILL)
    ch = shared_sandbox.open_job(SETTINGS, mode="replay")
    try:
        assert set(REQUIRED) <= set(_hello(ch))
    finally:
        ch.close()


def test_a_job_asking_for_other_layers_gets_a_child_forked_for_it(tiny_task: Path) -> None:
    box = Sandbox(tiny_task, allow_weak=True)
    try:
        spare = _spare(box)
        box.hardening = Hardening(seccomp=False).to_dict()  # jobs now differ from what spares were isolated with
        ch = box.open_job(SETTINGS, mode="replay")
        try:
            assert ch.pid != spare
            assert "seccomp" not in _hello(ch)
        finally:
            ch.close()
    finally:
        box.close()


def test_closing_a_sandbox_removes_its_home_and_its_spare(tiny_task: Path) -> None:
    box = Sandbox(tiny_task)
    home, spare = box._home, _spare(box)
    assert os.path.isdir(home) and _alive(spare)
    box.close()
    assert not os.path.exists(home)  # torch writes caches there; hundreds piled up in /tmp before
    assert not _alive(spare)
    box.close()  # idempotent


def _settled_minflt(pid: int, timeout_s: float = 20) -> int:
    """Page faults a waiting spare has taken, once it has stopped taking more."""
    def minflt() -> int:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])
    deadline, last = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline:
        now = minflt()
        if now == last:
            return now
        last = now
        time.sleep(0.3)
    raise AssertionError(f"spare {pid} kept faulting for {timeout_s} s")


def test_spares_skip_the_prefault_when_the_evaluations_keep_every_core_busy(tiny_task: Path, shared_sandbox: Sandbox) -> None:
    from autofusion.evaluation.executors import LocalExecutor, available_cores

    warm = _settled_minflt(_spare(shared_sandbox))
    executor = LocalExecutor.start(tiny_task, workers=available_cores())
    try:
        box = executor.supervisor.current_sandbox()
        assert box is not None and not box.spare_cores
        assert b"--no-prefault" in Path(f"/proc/{box.proc.pid}/cmdline").read_bytes().split(b"\0")
        cold = _settled_minflt(_spare(box))
        assert cold < warm / 2, (cold, warm)  # the prefault's copy-on-write faults were not taken
        assert executor.run(CONCAT, SETTINGS).ok
    finally:
        executor.shutdown()
