"""The proxy evaluator: the trusted side of one evaluation.

gate (static policy) -> sandboxed child: its protections checked (`harden.check_required`), smoke
run, traced eval-mode graph with the child's claimed params and FLOPs -> budget check -> training,
one val- and one test-logits frame and the parameters per epoch, judged here; the child is told
nothing after "go" and is killed when the parent stops it -> replay of the best epoch in a second
fresh sandboxed process that runs no candidate code (started as training starts, so its start-up
costs no wall time; with a core to spare it replays epochs as their parameters arrive, so the best
one is often done when training ends): its logits must match the reported ones, and the metrics,
params and FLOPs come from it (`graph.py`). This process holds the val and test labels and computes every metric;
the children only ever receive inputs. Every frame is checked for its type and shape. Faults of the
candidate come back as an `EvalResult` with a status, never as an exception; a sandbox lacking
required protections raises SandboxError.
"""

from __future__ import annotations

import logging
import os
import re
import select
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autofusion import gate
from autofusion.errors import SandboxError
from autofusion.evaluation import graph, metrics, weights
from autofusion.evaluation.protocol import Curves, EvalResult, Status, TrainSettings
from autofusion.sandbox import harden, wire
from autofusion.sandbox.pool import JobChannel, Sandbox
from autofusion.tasks.format import Task, load_task

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
# How far the trusted replay's logits may be from the candidate's own (summation order differs with
# the batch size); the reported metrics come from the replay either way.
REPLAY_RTOL, REPLAY_ATOL = 1e-3, 1e-3


@dataclass(frozen=True)
class Budgets:
    """Hard limits a candidate must meet before it is trained (edge-device constraints)."""

    max_params: int | None = None
    max_flops: int | None = None

    def violation(self, params: int, flops: int) -> str | None:
        if self.max_params is not None and params > self.max_params:
            return f"{params:,} parameters exceed --max-params {self.max_params:,}"
        if self.max_flops is not None and flops > self.max_flops:
            return f"{flops:,} FLOPs per sample exceed --max-flops {self.max_flops:,}"
        return None


class _Outcome(Exception):
    """Ends an evaluation early with a status (internal control flow)."""

    def __init__(self, status: Status, stage: str, error: str) -> None:
        super().__init__(error)
        self.status, self.stage, self.error = status, stage, error


class ProxyEvaluator:
    """Scores candidate code on one task under one protocol."""

    def __init__(self, task_dir: str | Path, sandbox: Sandbox | None = None, budgets: Budgets = Budgets(),
                 static_policy: bool = True, task: Task | None = None, owns_sandbox: bool | None = None,
                 parallel: int = 1) -> None:
        """`parallel`: how many evaluations run at once on this machine (an executor's workers)."""
        self.task = task or load_task(task_dir, features=False)  # labels only: the parent never needs features
        self.sandbox = sandbox or Sandbox(task_dir)
        # Where an evaluation's threads leave a core idle, the replay process replays epochs while
        # the candidate trains (`_replay_ahead`); not where the sandbox says the cores are taken.
        self.replay_ahead = bool(getattr(self.sandbox, "spare_cores", True))
        self.parallel = parallel
        self._owns_sandbox = sandbox is None if owns_sandbox is None else owns_sandbox  # close() stops it
        self.budgets = budgets
        self.static_policy = static_policy
        self.protections: list[str] = []  # the sandbox's active protections, as its last child reported
        val, test = self.task.splits["val"], self.task.splits["test"]
        self.shapes = {s: (self.task.splits[s].n, self.task.spec.num_classes) for s in ("val", "test")}
        assert val.labels is not None and test.labels is not None

    def close(self) -> None:
        if self._owns_sandbox:
            self.sandbox.close()

    # ------------------------------------------------------------------------------ public API

    def check(self, code: str) -> list[gate.Violation]:
        return gate.check_source(code) if self.static_policy else []

    def smoke(self, code: str, settings: TrainSettings) -> EvalResult:
        """Gate, smoke run and trace only (no training): used to validate generated code cheaply.
        Its params and FLOPs are the candidate process's claim; `evaluate` measures them."""
        return self._run(code, settings, smoke_only=True)

    def evaluate(self, code: str, settings: TrainSettings) -> EvalResult:
        return self._run(code, settings, smoke_only=False)

    def evaluate_with_weights(self, code: str, settings: TrainSettings) -> tuple[EvalResult, dict[str, "torch.Tensor"] | None]:
        """Evaluate and bring back the validated state dict of the best-val epoch (final training)."""
        state = _Progress(export_weights=True)
        result = self._run(code, settings, smoke_only=False, state=state)
        return result, state.best_weights if result.ok else None

    # ------------------------------------------------------------------------------ internals

    def _run(self, code: str, settings: TrainSettings, smoke_only: bool, state: "_Progress | None" = None) -> EvalResult:
        started = time.monotonic()
        violations = self.check(code)
        if violations:
            return EvalResult(Status.REJECTED, stage="gate", error="\n".join(map(str, violations)), settings=settings)
        channel = self.sandbox.open_job(settings, smoke_only=smoke_only)
        state = state or _Progress()
        try:
            self._converse(channel, code, settings, smoke_only, started, state)
            status, stage, error = Status.OK, None, None
        except _Outcome as out:
            status, stage, error = out.status, out.stage, out.error
        except OSError:  # the child closed its end while we were writing to it
            died = _died(channel, "train")
            status, stage, error = died.status, died.stage, died.error
        except SandboxError:
            raise  # missing protections or a dead worker: the setup's fault, not the candidate's
        except Exception as exc:  # noqa: BLE001 - nothing a candidate sends may take the search down
            log.exception("unexpected error while judging a candidate's output")
            status, stage, error = Status.FAILED, "judge", f"the trusted side could not judge this candidate's output ({type(exc).__name__}: {exc})"[:2000]
        finally:
            channel.close()
        return state.result(status, stage, error, settings, time.monotonic() - started, self.task)

    def _converse(self, ch: JobChannel, code: str, settings: TrainSettings, smoke_only: bool,
                  started: float, state: "_Progress") -> None:
        deadline = started + settings.timeout_s
        smoke_deadline = min(deadline, time.monotonic() + settings.smoke_timeout_s)
        self._hello(ch, smoke_deadline, "smoke")
        ch.send({"type": "code", "code": code})
        frame = self._recv(ch, smoke_deadline, "smoke")
        self._raise_if_error(frame, ch)
        if frame.type != "smoke_ok":
            raise _Outcome(Status.FAILED, "smoke", f"unexpected message {frame.type!r} from the candidate process")
        state.params, state.flops = _as_count(frame.header.get("params")), _as_count(frame.header.get("flops"))
        # Counts are measured in the child (see SECURITY.md): a model cannot hold more float32
        # parameters than its memory limit allows.
        if state.params > settings.max_memory_mb * (1 << 20) // 4:
            raise _Outcome(Status.FAILED, "smoke", f"reported {state.params:,} parameters cannot fit in {settings.max_memory_mb} MB")
        problem = self.budgets.violation(state.params, state.flops)
        if problem:
            raise _Outcome(Status.REJECTED, "budget", problem)
        self._graph(ch, min(deadline, time.monotonic() + settings.smoke_timeout_s), settings, state)
        if smoke_only:
            return  # the counts above are the child's claim; `evaluate` replaces them with measured ones
        ch.send({"type": "go", "export_weights": True} if state.export_weights else {"type": "go"})
        train_started = time.monotonic()
        replay = self._open_replay(settings, deadline, state)  # starts while the candidate trains
        try:
            self._train(ch, settings, deadline, state, replay if self._core_to_spare(settings) else None)
            state.train_seconds = time.monotonic() - train_started
            ch.close()
            if state.best_epoch is not None:
                self._verify(replay, deadline, state)
        finally:
            replay.close()

    def _core_to_spare(self, settings: TrainSettings) -> bool:
        cores = available_cores()
        threads = settings.threads or max(1, cores // self.parallel)  # 0: the cores split between evaluations
        return self.replay_ahead and threads * self.parallel < cores

    def _hello(self, ch: JobChannel, deadline: float, stage: str) -> None:
        """The child's first frame lists its active protections; refuse to go on without the required ones."""
        hello = self._recv(ch, deadline, stage)
        if hello.type != "hello":
            raise _Outcome(Status.FAILED, stage, f"unexpected message {hello.type!r} from the sandbox")
        ch.protections = [str(p) for p in hello.header.get("protections", [])]
        missing = harden.check_required(ch.protections, self.sandbox.allow_weak)  # before anything is sent
        if missing and self.protections != ch.protections:
            log.warning("running candidate code without the protections %s (allow_weak is set)", missing)
        self.protections = ch.protections

    def _graph(self, ch: JobChannel, deadline: float, settings: TrainSettings, state: "_Progress") -> None:
        """Receive and check the traced eval-mode graph and its constants before training is paid for."""
        frame = self._recv(ch, deadline, "trace", max_array_bytes=graph.MAX_GRAPH_BYTES)
        self._raise_if_error(frame, ch)
        batch = frame.header.get("batch")
        if (frame.type != "graph" or frame.array is None or frame.array.dtype != np.uint8
                or not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= self.shapes["val"][0]):
            ch.kill()
            raise _Outcome(Status.FAILED, "trace", f"expected the traced graph, got {frame.type!r} from the candidate process")
        state.graph, state.graph_batch = frame.array.tobytes(), batch
        try:
            program = graph.decode(state.graph)
        except graph.GraphError as exc:
            ch.kill()
            raise _Outcome(Status.REJECTED, "trace", str(exc)) from None
        state.graph_literals = program.literals
        state.constants = self._tensors(ch, deadline, graph.CONSTANTS_EPOCH, settings, "trace")
        if set(state.constants) != set(program.constants):
            ch.kill()
            raise _Outcome(Status.FAILED, "trace", "the constants sent are not the traced graph's constants")

    def _train(self, ch: JobChannel, settings: TrainSettings, deadline: float, state: "_Progress",
               ahead: JobChannel | None = None) -> None:
        """Read each epoch's parameters, val and test logits; keep the test logits of the best val
        epoch. The child hears nothing back, so it cannot adapt to how its val predictions scored.
        With `ahead` (the replay process), epochs are replayed meanwhile (`_replay_ahead`)."""
        val = self.task.splits["val"]
        assert val.labels is not None
        for epoch in range(settings.epochs):
            tensors = self._tensors(ch, deadline, epoch, settings, "train")
            if ahead is not None:
                self._replay_ahead(ahead, deadline, epoch, tensors, state)
            frame = self._expect(ch, deadline, "train", "epoch", epoch, self.shapes["val"])
            test = self._expect(ch, deadline, "predict", "epoch_test", epoch, self.shapes["test"])
            acc = metrics.accuracy(_finite(frame.array, "val"), val.labels, val.label_mask)
            state.add_epoch(frame, acc)
            if state.best_epoch == state.epochs_run - 1:
                state.val_logits, state.test_logits, state.best_state = frame.array, _finite(test.array, "test"), tensors
            if state.export_weights:
                exported = self._tensors(ch, deadline, epoch, settings, "export")
                if state.best_epoch == state.epochs_run - 1:
                    state.best_weights = exported
            stale = state.epochs_run - 1 - (state.best_epoch or 0)
            if settings.patience > 0 and stale >= settings.patience:
                return

    def _tensors(self, ch: JobChannel, deadline: float, epoch: int, settings: TrainSettings, stage: str) -> dict[str, "torch.Tensor"]:
        def next_frame(limit: int) -> wire.Frame:
            frame = self._recv(ch, deadline, stage, max_array_bytes=limit)
            self._raise_if_error(frame, ch)
            return frame

        try:
            return weights.recv_state_dict(next_frame, epoch, max_bytes=settings.max_memory_mb << 20)
        except wire.WireError as exc:
            ch.kill()
            raise _Outcome(Status.FAILED, stage, f"invalid tensors from the candidate process: {exc}") from None

    def _open_replay(self, settings: TrainSettings, deadline: float, state: "_Progress") -> JobChannel:
        """A fresh sandboxed process that runs no candidate code, given the graph and its constants
        now, so that its start-up overlaps the candidate's training (see `_verify`)."""
        assert state.graph is not None
        ch = self.sandbox.open_job(settings, mode="replay")
        try:
            self._hello(ch, deadline, "verify")
            ch.sock.settimeout(max(1.0, deadline - time.monotonic()))  # sends must not block forever
            ch.send({"type": "graph", "batch": state.graph_batch}, np.frombuffer(state.graph, dtype=np.uint8))
            weights.send_tensors(ch.sock, state.constants, graph.CONSTANTS_EPOCH)
        except OSError:
            outcome = _died(ch, "verify")
            ch.close()
            raise outcome from None
        except BaseException:
            ch.close()
            raise
        return ch

    def _replay_ahead(self, ch: JobChannel, deadline: float, epoch: int, tensors: dict[str, "torch.Tensor"],
                      state: "_Progress") -> None:
        """Send this epoch's tensors to the replay process unless it is still busy with an earlier
        epoch's. Which epochs it replays depends on timing alone, so it learns nothing of the val
        scores. When training ends, the best epoch's replay is often done already (or running while
        the candidate predicts), and the process is warm for any other: `_verify` waits less."""
        if state.replay_pending is not None:
            if not select.select([ch.sock], [], [], 0)[0]:
                return  # still replaying
            self._collect(ch, deadline, state)
        self._request(ch, deadline, epoch, tensors, state)

    def _request(self, ch: JobChannel, deadline: float, epoch: int, tensors: dict[str, "torch.Tensor"],
                 state: "_Progress") -> None:
        ch.sock.settimeout(max(1.0, deadline - time.monotonic()))  # sends must not block forever
        try:
            ch.send({"type": "replay", "epoch": epoch})
            weights.send_tensors(ch.sock, tensors, epoch)
        except OSError:
            raise _died(ch, "verify") from None
        state.replay_pending = epoch

    def _collect(self, ch: JobChannel, deadline: float, state: "_Progress") -> None:
        """Read the replay of the pending epoch (val and test logits, then FLOPs per sample); keep it
        if that epoch is the best so far."""
        epoch = state.replay_pending
        logits = {}
        for split in ("val", "test"):
            frame = self._recv(ch, deadline, "verify", self.shapes[split])
            self._raise_if_error(frame, ch)
            if frame.type != "replayed" or frame.header.get("split") != split or frame.header.get("epoch") != epoch:
                raise _Outcome(Status.FAILED, "verify", f"unexpected message {frame.type!r} from the replay process")
            logits[split] = frame.array
        done = self._recv(ch, deadline, "verify")
        self._raise_if_error(done, ch)
        flops = done.header.get("flops") if done.type == "replay_done" and done.header.get("epoch") == epoch else None
        if not isinstance(flops, int) or isinstance(flops, bool) or flops < 0:
            raise _Outcome(Status.FAILED, "verify", "the replay process did not report FLOPs")
        state.replay_pending = None
        if epoch == state.best_epoch:  # judged by now; an epoch that is not the best never becomes it
            state.replayed = (epoch, logits["val"], logits["test"], flops)

    def _verify(self, ch: JobChannel, deadline: float, state: "_Progress") -> None:
        """The best epoch replayed from the traced graph with that epoch's tensors, in the replay
        process (done already if `_replay_ahead` got to it). Its logits must match what the
        candidate reported; the metrics, params and FLOPs are then taken from the replay, so
        nothing outside the graph can have produced them. The replay is part of the evaluation's
        wall-clock limit."""
        assert state.best_state is not None and state.best_epoch is not None
        if state.replay_pending is not None:
            self._collect(ch, deadline, state)
        if state.replayed is None or state.replayed[0] != state.best_epoch:
            self._request(ch, deadline, state.best_epoch, state.best_state, state)
            self._collect(ch, deadline, state)
        assert state.replayed is not None
        _, val_logits, test_logits, flops = state.replayed
        replayed = {"val": _finite(val_logits, "val"), "test": _finite(test_logits, "test")}
        for split, reported in (("val", state.val_logits), ("test", state.test_logits)):
            assert reported is not None
            if not np.allclose(replayed[split], reported, rtol=REPLAY_RTOL, atol=REPLAY_ATOL):
                gap = float(np.max(np.abs(replayed[split] - reported)))
                raise _Outcome(Status.FAILED, "verify", (
                    f"the {split} logits reported for epoch {state.best_epoch} differ (by up to {gap:.3g}) from the "
                    "same model's traced graph replayed by the trusted side; in eval mode, forward must compute "
                    "the same thing on every call (no Python-side state, randomness, .item()/.tolist() or "
                    "numpy feeding back into the computation)"))
        val = self.task.splits["val"]
        assert val.labels is not None
        state.verified_val = metrics.accuracy(replayed["val"], val.labels, val.label_mask)
        state.test_logits = replayed["test"]
        state.params = graph.count_params(state.best_state, state.constants, state.graph_literals)
        state.flops = flops
        problem = self.budgets.violation(state.params, state.flops)
        if problem:
            raise _Outcome(Status.REJECTED, "budget", problem + " (measured from the trained model's graph)")

    def _expect(self, ch: JobChannel, deadline: float, stage: str, kind: str, epoch: int,
                shape: tuple[int, ...]) -> wire.Frame:
        frame = self._recv(ch, deadline, stage, shape)
        self._raise_if_error(frame, ch)
        if frame.type != kind or frame.header.get("epoch") != epoch:
            ch.kill()
            raise _Outcome(Status.FAILED, stage, f"expected {kind!r} for epoch {epoch}, got {frame.type!r} "
                           f"for epoch {frame.header.get('epoch')!r} from the candidate process")
        return frame

    def _recv(self, ch: JobChannel, deadline: float, stage: str, shape: tuple[int, ...] | None = None,
              max_array_bytes: int = 0) -> wire.Frame:
        """The next frame; an array is accepted only of the expected shape or up to `max_array_bytes`
        (checked before anything is allocated)."""
        try:
            return ch.recv(deadline, expect_shape=shape, max_array_bytes=max_array_bytes if shape is None else 256 << 20)
        except wire.WireTimeout:
            ch.kill()
            raise _Outcome(Status.TIMEOUT, stage, f"killed after the time limit during {stage}") from None
        except wire.WireClosed:
            raise _died(ch, stage) from None
        except wire.WireError as exc:
            ch.kill()
            raise _Outcome(Status.FAILED, stage, f"malformed output from the candidate process: {exc}") from None

    @staticmethod
    def _raise_if_error(frame: wire.Frame, ch: JobChannel) -> None:
        if frame.type == "error":
            stage = frame.header.get("stage")
            stage = stage if stage in CHILD_STAGES else "train"  # a child cannot claim "gate" or "budget"
            status = Status.REJECTED if stage in ("load", "smoke", "trace") else Status.FAILED
            raise _Outcome(status, stage, untrusted_text(frame.header.get("error", "")))


def _died(ch: JobChannel, stage: str) -> _Outcome:
    """The child of `ch` is gone: how it ended (`executors.lost_by_system` re-runs a job whose
    process was killed from outside)."""
    ch.kill()
    code = ch.exit_code()
    why = f"exit code {code}" if code is not None and code >= 0 else f"killed by signal {-code}" if code is not None else "unknown exit"
    who = "replay" if stage == "verify" else "candidate"
    return _Outcome(Status.FAILED, stage, f"the {who} process died during {stage} ({why}); a memory or resource limit may have been hit")


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _number(value: object) -> float:
    """A number the child reported for plotting; anything else (or too large for a float) is NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    try:
        return float(value)
    except OverflowError:
        return float("nan")


def untrusted_text(text: object, limit: int = 8000) -> str:
    """Text from the candidate's process made safe to store, print and quote: valid UTF-8, no
    terminal control sequences (a candidate could otherwise repaint the user's screen), truncated."""
    raw = str(text)[:limit]
    raw = raw.encode("utf-8", "replace").decode("utf-8")  # lone surrogates would break SQLite
    return _CONTROL.sub(lambda m: "" if m.group() == "\x1b" else "\N{REPLACEMENT CHARACTER}", _ESCAPES.sub("", raw))


_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
CHILD_STAGES = frozenset({"load", "smoke", "trace", "train", "predict", "export", "verify"})


def _as_count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Outcome(Status.FAILED, "smoke", f"invalid count {value!r} from the candidate process")
    return value


def _finite(array: np.ndarray | None, split: str) -> np.ndarray:
    if array is None:
        raise _Outcome(Status.FAILED, "predict", f"no {split} logits in the candidate's reply")
    # Masked classes carry a large negative fill; only NaN and +/-inf are refused.
    if not np.isfinite(array).all():
        raise _Outcome(Status.FAILED, "predict", f"the {split} logits contain NaN or inf")
    return array


class _Progress:
    """What the parent has learned so far in one evaluation."""

    def __init__(self, export_weights: bool = False) -> None:
        self.export_weights = export_weights
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.params: int | None = None
        self.flops: int | None = None
        self.train_loss: list[float] = []
        self.val_accuracy: list[float] = []
        self.epoch_seconds: list[float] = []
        self.best_epoch: int | None = None
        self.val_logits: np.ndarray | None = None
        self.test_logits: np.ndarray | None = None
        self.train_seconds = 0.0
        self.graph: bytes | None = None  # the traced eval-mode graph (JSON) and its batch size
        self.graph_batch = 0
        self.graph_literals = 0  # numbers written into the graph as values (counted as params)
        self.constants: dict[str, torch.Tensor] = {}
        self.best_state: dict[str, torch.Tensor] | None = None  # parameters and buffers at the best epoch
        self.replay_pending: int | None = None  # the epoch the replay process is replaying now
        self.replayed: tuple[int, np.ndarray, np.ndarray, int] | None = None  # the best epoch's: epoch, val, test logits, FLOPs
        self.verified_val: float | None = None  # val accuracy of the trusted replay

    @property
    def epochs_run(self) -> int:
        return len(self.val_accuracy)

    def add_epoch(self, frame: wire.Frame, acc: float) -> None:
        loss = frame.header.get("train_loss")
        secs = frame.header.get("seconds")
        self.train_loss.append(_number(loss))
        self.epoch_seconds.append(_number(secs))
        if self.best_epoch is None or acc > self.val_accuracy[self.best_epoch]:
            self.best_epoch = len(self.val_accuracy)
        self.val_accuracy.append(acc)

    def result(self, status: Status, stage: str | None, error: str | None, settings: TrainSettings,
               wall: float, task: Task) -> EvalResult:
        val_acc = test_acc = None
        breakdown = None
        if status is Status.OK and self.test_logits is not None and self.best_epoch is not None:
            test = task.splits["test"]
            assert test.labels is not None
            val_acc = self.val_accuracy[self.best_epoch] if self.verified_val is None else self.verified_val
            test_acc = metrics.accuracy(self.test_logits, test.labels, test.label_mask)
            breakdown = metrics.category_breakdown(self.test_logits, test)
        return EvalResult(
            status=status, val_accuracy=val_acc, test_accuracy=test_acc, params=self.params, flops=self.flops,
            train_seconds=self.train_seconds, wall_seconds=wall, best_epoch=self.best_epoch,
            epochs_run=self.epochs_run, error=error, stage=stage, settings=settings, breakdown=breakdown,
            curves=Curves(train_loss=self.train_loss, val_accuracy=self.val_accuracy, epoch_seconds=self.epoch_seconds),
        )
