"""Executors: run evaluations concurrently and hand back futures of `EvalResult`.

`LocalExecutor` runs up to `workers` evaluations at once on this machine through one sandbox (one
pre-warmed zygote; each evaluation is its own forked child), with the machine's cores divided
between them. The search loop only sees `submit()` and futures, whichever executor runs the work.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor

from autofusion.evaluation.evaluator import ProxyEvaluator
from autofusion.evaluation.protocol import EvalResult, TrainSettings


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


class LocalExecutor:
    name = "local"

    def __init__(self, evaluator: ProxyEvaluator, workers: int = 1) -> None:
        self.evaluator = evaluator
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evaluation")
        self._closed = False

    def resolve(self, settings: TrainSettings) -> TrainSettings:
        return settings if settings.threads else settings.with_(threads=threads_per_worker(self.workers))

    def submit(self, code: str, settings: TrainSettings) -> "Future[EvalResult]":
        return self._pool.submit(self.evaluator.evaluate, code, self.resolve(settings))

    def smoke(self, code: str, settings: TrainSettings) -> EvalResult:
        return self.evaluator.smoke(code, self.resolve(settings))

    def shutdown(self, kill: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if kill:
            self.evaluator.sandbox.close()  # kills running children; their futures end as failed
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.evaluator.close()
