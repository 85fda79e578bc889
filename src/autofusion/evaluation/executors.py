"""Executors: run evaluations concurrently and hand back futures of `EvalResult`.

`LocalExecutor` runs up to `workers` evaluations at once on this machine. The persistent worker is
the sandbox's zygote: it imported torch and loaded the task's features once, and forks one fresh,
isolated child per evaluation (a child is never reused after candidate code ran in it). The
machine's cores are divided between the running evaluations (`threads_per_worker`).

`WorkerSupervisor` keeps a zygote alive: it starts a new one when the current one has died (killed,
crashed, out of memory) and recycles it after `recycle_after_jobs` jobs, closing the old one once its
running jobs are done. An evaluation that the *system* lost is run again, never recorded as the
candidate's failure:
- the zygote died while the job ran (its child dies with it): restart the zygote, run the job again;
- the child was killed by a signal nobody in AutoFusion sent (an operator's `kill -9`, the kernel's
  OOM killer): run the job again once — a candidate that kills its own process every time is then
  recorded as failed, with both attempts' reasons.
Timeouts, exceptions, bad outputs and memory errors the trainer reports are the candidate's own
result and are never retried. Each retry costs at most `max_retries` extra runs of one job.

The search loop only sees `workers`, `submit()`, `smoke()` and `shutdown()`, whichever executor runs
the work (see `ray_executor.RayExecutor` for the cluster version).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable

from autofusion.errors import SandboxError
from autofusion.evaluation.evaluator import Budgets, ProxyEvaluator, available_cores
from autofusion.evaluation.protocol import EvalResult, Status, TrainSettings
from autofusion.sandbox.pool import Sandbox
from autofusion.tasks.format import Task

log = logging.getLogger(__name__)

RECYCLE_AFTER_JOBS = 500  # a fresh zygote every N jobs bounds any slow leak; a restart costs ~2 s
MAX_RETRIES = 2  # re-runs of one job after the system (not the candidate) lost it
# The evaluator's wording for a child that died without reporting (evaluator._recv, WireClosed).
_DIED = "process died during"  # the candidate's or the replay's (`evaluator._died`)
_SIGNALLED = "killed by signal"


def threads_per_worker(workers: int) -> int:
    """Torch threads per evaluation: the cores split evenly, at least one (oversubscription with
    OpenMP spinning threads costs far more than an idle core)."""
    return max(1, available_cores() // max(1, workers))


def lost_by_system(result: EvalResult | None, zygote_alive: bool) -> str | None:
    """Why this job's result should not count as the candidate's (None: it counts)."""
    if result is None:
        return "the evaluation worker could not start the job"
    if result.status is Status.OK or result.status is Status.TIMEOUT or result.status is Status.REJECTED:
        return None
    if not zygote_alive:
        return "the evaluation worker (zygote) died during the job"
    error = result.error or ""
    if _DIED in error and _SIGNALLED in error:
        return f"the evaluation's process was killed from outside ({error.split('(')[-1].split(')')[0]})"
    return None


class _Generation:
    """One zygote and the evaluator bound to it."""

    def __init__(self, sandbox: Sandbox, evaluator: ProxyEvaluator) -> None:
        self.sandbox = sandbox
        self.evaluator = evaluator
        self.n_jobs = 0
        self.n_running = 0
        self.retired = False


class WorkerSupervisor:
    """Owns the current zygote; restarts it when it dies, recycles it after `recycle_after_jobs`."""

    def __init__(self, start_sandbox: Callable[[], Sandbox], task: Task, budgets: Budgets = Budgets(),
                 static_policy: bool = True, recycle_after_jobs: int = RECYCLE_AFTER_JOBS,
                 first: Sandbox | None = None, own_first: bool = True, parallel: int = 1) -> None:
        self._start_sandbox = start_sandbox
        self.task, self.budgets, self.static_policy = task, budgets, static_policy
        self.parallel = parallel  # evaluations at once through this supervisor's zygote
        self.recycle_after_jobs = recycle_after_jobs
        self._lock = threading.Lock()
        self._current: _Generation | None = self._bind(first) if first is not None else None
        self._generations: list[_Generation] = [] if self._current is None else [self._current]
        self._borrowed = None if own_first else first  # a caller's sandbox is left for the caller to close
        self.n_started = 0  # zygotes this supervisor started (restarts and recycles)
        self.closed = False

    def _bind(self, sandbox: Sandbox) -> _Generation:
        evaluator = ProxyEvaluator(sandbox.task_dir, sandbox=sandbox, budgets=self.budgets,
                                   static_policy=self.static_policy, task=self.task, parallel=self.parallel)
        return _Generation(sandbox, evaluator)

    def acquire(self) -> _Generation:
        with self._lock:
            if self.closed:
                raise SandboxError("the executor has been shut down; create a new one")
            gen = self._current
            if gen is None or not gen.sandbox.alive or (self.recycle_after_jobs and gen.n_jobs >= self.recycle_after_jobs):
                if gen is not None:
                    reason = "recycled" if gen.sandbox.alive else "died"
                    log.info("evaluation worker %s after %d jobs; starting a new one", reason, gen.n_jobs)
                    self._retire(gen)
                gen = self._current = self._bind(self._start_sandbox())
                self._generations.append(gen)
                self.n_started += 1
            gen.n_jobs += 1
            gen.n_running += 1
            return gen

    def release(self, gen: _Generation) -> None:
        with self._lock:
            gen.n_running -= 1
            if gen.retired and gen.n_running == 0:
                self._close(gen)

    def _retire(self, gen: _Generation) -> None:
        gen.retired = True
        if gen.n_running == 0:
            self._close(gen)

    def _close(self, gen: _Generation) -> None:
        if gen.sandbox is not self._borrowed:
            gen.sandbox.close()  # idempotent; kills whatever children are left
        if gen in self._generations:
            self._generations.remove(gen)

    def current_sandbox(self) -> Sandbox | None:
        return None if self._current is None else self._current.sandbox

    def close(self) -> None:
        with self._lock:
            self.closed = True
            for gen in list(self._generations):
                self._close(gen)
            self._current = None


class LocalExecutor:
    """Up to `workers` evaluations at once through one supervised zygote on this machine."""

    name = "local"

    def __init__(self, evaluator: ProxyEvaluator, workers: int = 1, recycle_after_jobs: int = RECYCLE_AFTER_JOBS,
                 max_retries: int = MAX_RETRIES) -> None:
        """`evaluator` is the template: its task, budgets, gate policy and sandbox (the first zygote;
        replacements are started with the same hardening). Its sandbox is closed at shutdown if the
        evaluator owns it (made it itself); a sandbox passed to the evaluator stays the caller's."""
        if workers < 1:
            raise SandboxError(f"workers={workers} must be >= 1")
        self.workers = workers
        self.max_retries = max_retries
        box = evaluator.sandbox
        self.supervisor = WorkerSupervisor(
            lambda: Sandbox(box.task_dir, hardening=box.hardening, require_network_isolation=box.require_network_isolation,
                            allow_weak=box.allow_weak, spare_cores=getattr(box, "spare_cores", True)),
            evaluator.task, evaluator.budgets, evaluator.static_policy, recycle_after_jobs, first=box,
            own_first=bool(getattr(evaluator, "_owns_sandbox", True)), parallel=workers)
        self.n_retries = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evaluation")
        self._closed = False

    @classmethod
    def start(cls, task_dir: str | Path, workers: int = 1, budgets: Budgets = Budgets(), static_policy: bool = True,
              allow_weak: bool = False, recycle_after_jobs: int = RECYCLE_AFTER_JOBS,
              spare_cores: bool | None = None) -> "LocalExecutor":
        """Load the task's labels (they stay in this process), start the first zygote. `spare_cores`
        (see `Sandbox`): by default, whether `workers` leaves a core of this machine idle."""
        spare = workers < available_cores() if spare_cores is None else spare_cores
        sandbox = Sandbox(task_dir, allow_weak=allow_weak, spare_cores=spare)
        evaluator = ProxyEvaluator(task_dir, sandbox=sandbox, budgets=budgets,
                                   static_policy=static_policy, owns_sandbox=True)  # the executor closes it
        return cls(evaluator, workers=workers, recycle_after_jobs=recycle_after_jobs)

    def resolve(self, settings: TrainSettings) -> TrainSettings:
        return settings if settings.threads else settings.with_(threads=threads_per_worker(self.workers))

    def submit(self, code: str, settings: TrainSettings) -> "Future[EvalResult]":
        return self._pool.submit(self.run, code, self.resolve(settings), False)

    def smoke(self, code: str, settings: TrainSettings) -> EvalResult:
        return self.run(code, self.resolve(settings), True)

    def run(self, code: str, settings: TrainSettings, smoke_only: bool = False) -> EvalResult:
        """One evaluation, re-run when the system lost it (see the module docstring)."""
        reasons: list[str] = []
        for attempt in range(self.max_retries + 1):
            gen = self.supervisor.acquire()
            result: EvalResult | None = None
            try:
                result = gen.evaluator.smoke(code, settings) if smoke_only else gen.evaluator.evaluate(code, settings)
            except SandboxError:
                if gen.sandbox.alive or self._closed:
                    raise  # a fault of the setup (e.g. missing protections), not a lost job
            finally:
                self.supervisor.release(gen)
            lost = None if self._closed else lost_by_system(result, gen.sandbox.alive)
            if lost is None:
                return _with_history(result, reasons) if result is not None else _lost(reasons, settings)
            reasons.append(f"attempt {attempt + 1}: {lost}")
            if attempt < self.max_retries:
                self.n_retries += 1
                log.warning("evaluation lost (%s); running it again", lost)
            elif result is not None:
                return _with_history(result, reasons)
        return _lost(reasons, settings)

    def shutdown(self, kill: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if kill:
            self.supervisor.close()  # kills running children; their futures end as failed, not retried
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.supervisor.close()


def _with_history(result: EvalResult, reasons: list[str]) -> EvalResult:
    if not reasons or result.ok:
        return result
    return replace(result, error="\n".join([*reasons, result.error or ""]).strip())


def _lost(reasons: list[str], settings: TrainSettings) -> EvalResult:
    return EvalResult(Status.FAILED, stage="worker", settings=settings,
                      error="the evaluation worker failed on every attempt: " + "; ".join(reasons))
