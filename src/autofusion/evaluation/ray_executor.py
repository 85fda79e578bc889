"""RayExecutor: the same evaluations as `LocalExecutor`, run by Ray actors on a local or remote cluster.

Each `EvaluationActor` is a trusted process on some node: it loads the task (val/test labels
included, as the local search process does), owns a supervised zygote there (`LocalExecutor` with one
worker) and computes every metric; candidate code runs only in the sandboxed children that zygote
forks, which receive inputs and never labels (DESIGN §5). The search process keeps the store, the
controller and the generator; it only sends code and `TrainSettings` and receives `EvalResult`s, so
the search, the store and the results are the same whichever executor runs them.

Requirements on a remote cluster: `autofusion` (same version) installed on every node, and the task
directory readable at the same path on every node (a shared file system); an actor that cannot read
it fails at start with a message naming the node and the path. An actor that dies (node lost, actor
killed) is replaced and its job re-run, at most `max_retries` times per job.

Ray is an optional extra: `pip install "autofusion[ray]"`; it is imported only when this executor
is built.
"""

from __future__ import annotations

import logging
import queue
import socket
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from autofusion.errors import ConfigError, SandboxError
from autofusion.evaluation.evaluator import Budgets
from autofusion.evaluation.executors import MAX_RETRIES, RECYCLE_AFTER_JOBS, LocalExecutor
from autofusion.evaluation.protocol import EvalResult, Status, TrainSettings

log = logging.getLogger(__name__)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError('--executor ray needs Ray: pip install "autofusion[ray]" (or pip install ray)') from None
    return ray


class EvaluationActor:
    """Runs inside a Ray worker process: a trusted evaluator and its zygote on that node."""

    def __init__(self, task_dir: str, budgets: dict[str, int | None], static_policy: bool, allow_weak: bool,
                 recycle_after_jobs: int) -> None:
        if not (Path(task_dir) / "task.json").is_file():
            raise ConfigError(f"task directory {task_dir} is not readable on Ray node {socket.gethostname()}; "
                              "put it on a file system every node shares, at the same path")
        self.executor = LocalExecutor.start(task_dir, workers=1, budgets=Budgets(**budgets), static_policy=static_policy,
                                            allow_weak=allow_weak, recycle_after_jobs=recycle_after_jobs,
                                            spare_cores=False)  # Ray packs actors onto the node's CPUs

    def node(self) -> str:
        return socket.gethostname()

    def zygote_pid(self) -> int | None:
        box = self.executor.supervisor.current_sandbox()
        return None if box is None else box.proc.pid

    def evaluate(self, code: str, settings: TrainSettings, smoke_only: bool) -> EvalResult:
        return self.executor.run(code, settings, smoke_only)

    def shutdown(self) -> None:
        self.executor.shutdown(kill=True)


class RayExecutor:
    """`workers` actors, one evaluation each at a time; `submit()` returns ordinary futures."""

    name = "ray"

    def __init__(self, task_dir: str | Path, workers: int = 1, address: str | None = None, budgets: Budgets = Budgets(),
                 static_policy: bool = True, allow_weak: bool = False, cpus_per_worker: int = 1,
                 recycle_after_jobs: int = RECYCLE_AFTER_JOBS, max_retries: int = MAX_RETRIES) -> None:
        self.ray = import_ray()
        if workers < 1:
            raise ConfigError(f"workers={workers} must be >= 1")
        self.workers, self.max_retries, self.cpus_per_worker = workers, max_retries, cpus_per_worker
        self._owns_ray = not self.ray.is_initialized()
        if self._owns_ray:
            self.ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        self._args = (str(Path(task_dir).resolve()), {"max_params": budgets.max_params, "max_flops": budgets.max_flops},
                      static_policy, allow_weak, recycle_after_jobs)
        self._actor_class = self.ray.remote(EvaluationActor).options(num_cpus=cpus_per_worker)
        self.n_replaced = 0
        self._live: list[Any] = []  # every actor not yet replaced, busy or idle
        self._idle: queue.Queue[Any] = queue.Queue()
        actors = [self._new_actor() for _ in range(workers)]
        try:
            self.nodes = self.ray.get([a.node.remote() for a in actors])  # waits until every zygote is up
        except self.ray.exceptions.RayError as exc:
            raise SandboxError(f"the Ray evaluation workers could not start: {_cause(exc)}") from None
        for actor in actors:
            self._idle.put(actor)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ray-evaluation")
        self._closed = False

    def _new_actor(self, replacing: Any = None) -> Any:
        actor = self._actor_class.remote(*self._args)
        self._live = [a for a in self._live if a is not replacing] + [actor]
        return actor

    def resolve(self, settings: TrainSettings) -> TrainSettings:
        return settings if settings.threads else settings.with_(threads=self.cpus_per_worker)

    def submit(self, code: str, settings: TrainSettings) -> "Future[EvalResult]":
        return self._pool.submit(self.run, code, self.resolve(settings), False)

    def smoke(self, code: str, settings: TrainSettings) -> EvalResult:
        return self.run(code, self.resolve(settings), True)

    def run(self, code: str, settings: TrainSettings, smoke_only: bool = False) -> EvalResult:
        """One evaluation on an idle actor; a dead actor is replaced and the job run again."""
        actor = self._idle.get()
        reasons: list[str] = []
        try:
            for _attempt in range(self.max_retries + 1):
                try:
                    return self.ray.get(actor.evaluate.remote(code, settings, smoke_only))
                except self.ray.exceptions.RayActorError as exc:
                    if self._closed:
                        break
                    reasons.append(_cause(exc))
                    log.warning("Ray evaluation actor died (%s); replacing it and running the job again", reasons[-1])
                    actor = self._new_actor(replacing=actor)
                    self.n_replaced += 1
        finally:
            self._idle.put(actor)
        return EvalResult(Status.FAILED, stage="worker", settings=settings,
                          error="the Ray evaluation actor died on every attempt: " + "; ".join(reasons or ["shut down"]))

    def actors(self) -> list[Any]:
        """Every live actor, busy or idle (for tests and diagnostics)."""
        return list(self._live)

    def shutdown(self, kill: bool = False) -> None:
        """Stop every actor (each closes its zygote); `kill` does not wait for running jobs: killing
        an actor closes its zygote's control socket, and the zygote kills its children and exits."""
        if self._closed:
            return
        self._closed = True
        if kill:
            for actor in self._live:
                self.ray.kill(actor)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for actor in self._live if not kill else []:
            try:
                self.ray.get(actor.shutdown.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - an actor that is already gone needs no shutdown
                pass
            self.ray.kill(actor)
        if self._owns_ray:
            self.ray.shutdown()


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:500] if text else type(exc).__name__
