"""LocalExecutor: concurrent jobs, a killed zygote or child loses no evaluation, recycling, threads."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from autofusion.evaluation import Status, TrainSettings
from autofusion.evaluation.executors import LocalExecutor, lost_by_system, threads_per_worker
from autofusion.evaluation.protocol import EvalResult

from helpers import CONCAT

FAST = TrainSettings(epochs=2, threads=1, timeout_s=60)
LONG = TrainSettings(epochs=300, patience=0, threads=1, timeout_s=120)  # ~1 s on a quiet core: killable mid-way

RAISES_IN_TRAINING = CONCAT.replace("return self.mlp(torch.cat(parts, dim=-1))", """out = self.mlp(torch.cat(parts, dim=-1))
        if self.training and out.shape[0] > 3:
            raise RuntimeError("fails once real training starts")
        return out""")


@pytest.fixture(scope="module")
def shared_executor(tiny_task: Path):
    ex = LocalExecutor.start(tiny_task, workers=2)  # one zygote start for the whole module
    yield ex
    ex.shutdown()


@pytest.fixture
def executor(shared_executor: LocalExecutor) -> LocalExecutor:
    shared_executor.n_retries = shared_executor.supervisor.n_started = 0
    shared_executor.supervisor.recycle_after_jobs = 0
    return shared_executor


def _opened(sandbox, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(mode, pid) of every job the sandbox starts from now on, as it starts them."""
    jobs: list[tuple[str, int]] = []
    original = sandbox.open_job

    def open_job(settings, smoke_only=False, mode="candidate"):
        ch = original(settings, smoke_only=smoke_only, mode=mode)
        jobs.append((mode, ch.pid))
        return ch

    monkeypatch.setattr(sandbox, "open_job", open_job)
    return jobs


def _wait_for(jobs: list[tuple[str, int]], mode: str, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = [pid for m, pid in jobs if m == mode]
        if pids:
            time.sleep(0.2)  # well into the job
            return pids[0]
        time.sleep(0.01)
    raise AssertionError(f"no {mode} job started")


def test_threads_split_the_cores_between_workers() -> None:
    cores = len(os.sched_getaffinity(0))
    assert threads_per_worker(1) == cores
    assert threads_per_worker(cores) == 1
    assert threads_per_worker(cores * 4) == 1


def test_two_jobs_run_at_once_and_match_sequential_results(executor: LocalExecutor) -> None:
    futures = [executor.submit(CONCAT, FAST.with_(seed=s)) for s in (0, 1)]
    results = [f.result(timeout=120) for f in futures]
    assert all(r.status is Status.OK for r in results), [r.error for r in results]
    again = executor.run(CONCAT, FAST.with_(seed=1))
    assert again.val_accuracy == results[1].val_accuracy and again.curves.train_loss == results[1].curves.train_loss


@pytest.mark.slow  # starts a second zygote
def test_killed_zygote_is_restarted_and_the_job_rerun(executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    zygote = executor.supervisor.current_sandbox()
    jobs = _opened(zygote, monkeypatch)
    future = executor.submit(CONCAT, LONG)
    _wait_for(jobs, "candidate")
    os.kill(zygote.proc.pid, signal.SIGKILL)
    result = future.result(timeout=180)
    assert result.status is Status.OK, result.error
    assert result.epochs_run == LONG.epochs
    assert executor.n_retries == 1 and executor.supervisor.n_started == 1
    assert executor.supervisor.current_sandbox() is not zygote and executor.supervisor.current_sandbox().alive


@pytest.mark.parametrize("mode", ["candidate", "replay"])
def test_child_killed_from_outside_is_rerun_once(executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    jobs = _opened(executor.supervisor.current_sandbox(), monkeypatch)
    future = executor.submit(CONCAT, LONG)
    os.kill(_wait_for(jobs, mode), signal.SIGKILL)  # the replay process waits from the start of training
    result = future.result(timeout=180)
    assert result.status is Status.OK, result.error
    assert (executor.n_retries, executor.supervisor.n_started) == (1, 0), result.error  # the zygote was fine


def test_a_candidate_fault_is_recorded_not_retried(executor: LocalExecutor) -> None:
    result = executor.run(RAISES_IN_TRAINING, FAST)
    assert result.status is Status.FAILED and "fails once real training starts" in (result.error or "")
    assert executor.n_retries == 0


@pytest.mark.slow  # starts a second zygote
def test_zygote_is_recycled_after_n_jobs(executor: LocalExecutor) -> None:
    first = executor.supervisor.current_sandbox()
    executor.supervisor.recycle_after_jobs = executor.supervisor._current.n_jobs + 1
    results = [executor.smoke(CONCAT, FAST) for _ in range(2)]
    assert all(r.status is Status.OK for r in results)
    assert executor.supervisor.n_started == 1 and executor.supervisor.current_sandbox() is not first
    assert first.proc.poll() is not None  # the retired zygote was closed once idle


def test_shutdown_closes_every_zygote(tiny_task: Path, shared_sandbox) -> None:
    from autofusion.evaluation import ProxyEvaluator

    ex = LocalExecutor(ProxyEvaluator(tiny_task, sandbox=shared_sandbox), workers=1)
    assert ex.smoke(CONCAT, FAST).status is Status.OK
    ex.shutdown(kill=True)
    assert ex.supervisor.current_sandbox() is None and ex.supervisor.closed
    assert shared_sandbox.alive  # the caller's sandbox stays the caller's


def test_lost_by_system_tells_system_faults_from_candidate_faults() -> None:
    died = EvalResult(Status.FAILED, stage="train", error="the candidate process died during train (killed by signal 9); a")
    raised = EvalResult(Status.FAILED, stage="train", error="RuntimeError: boom")
    assert lost_by_system(died, zygote_alive=True) is not None
    assert lost_by_system(raised, zygote_alive=True) is None
    assert lost_by_system(raised, zygote_alive=False) is not None
    assert lost_by_system(EvalResult(Status.TIMEOUT), zygote_alive=False) is None
    assert lost_by_system(None, zygote_alive=False) is not None
