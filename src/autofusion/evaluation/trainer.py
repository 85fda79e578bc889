"""The proxy trainer: runs *inside* the sandboxed child process, next to the candidate's code.

It loads the candidate, runs the smoke test, traces the eval-mode forward (this process's claim of
params and FLOPs comes from there; the parent measures its own from the replay), trains on the train
split and streams raw val and test logits to the trusted parent after every epoch. The parent alone
holds the val and test labels; after "go" it sends this process nothing (not even "best" or "stop":
either bit would let a candidate hill-climb the val labels), it keeps the test logits of the epoch
it selects and kills the process when it has seen enough. Nothing this process says is trusted for
a metric (DESIGN §5); the train loss it reports is for plotting only.
"""

from __future__ import annotations

import math
import random
import socket
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from autofusion.evaluation import graph, weights
from autofusion.evaluation.protocol import TrainSettings
from autofusion.sandbox import wire

SMOKE_BATCHES = (1, 3)
EVAL_BATCH = 512
MASK_FILL = -1e9
# Taken at import, in the zygote, before any candidate code exists: a candidate class that overrides
# `parameters`, `eval` or `numel` cannot change what this process calls.
_MODULE_PARAMETERS = torch.nn.Module.parameters
_MODULE_TRAIN = torch.nn.Module.train
_NUMEL = torch.Tensor.numel


@dataclass
class WorkerData:
    """What a candidate's process may see: train with labels, val/test inputs without labels."""

    input_shapes: dict[str, tuple[int, ...]]
    num_classes: int
    train_inputs: dict[str, torch.Tensor]
    train_labels: torch.Tensor
    train_label_mask: torch.Tensor | None
    eval_inputs: dict[str, dict[str, torch.Tensor]]  # "val"/"test" -> inputs (features + masks)
    eval_label_masks: dict[str, torch.Tensor | None]  # valid options are an input, not a label


class CandidateError(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def _select(inputs: dict[str, torch.Tensor], idx: torch.Tensor | slice) -> dict[str, torch.Tensor]:
    """A batch; features stored in half precision reach the candidate as float32."""
    return {k: v[idx].float() if v.is_floating_point() and v.dtype != torch.float32 else v[idx] for k, v in inputs.items()}


def _masked(logits: torch.Tensor, label_mask: torch.Tensor | None) -> torch.Tensor:
    return logits if label_mask is None else logits.masked_fill(~label_mask, MASK_FILL)


def load_candidate(code: str) -> type:
    namespace: dict[str, Any] = {"__name__": "candidate"}
    try:
        exec(compile(code, "candidate.py", "exec"), namespace)  # noqa: S102 - this process is the sandbox
    except Exception as exc:  # noqa: BLE001 - any fault of candidate code is data
        raise CandidateError("load", _format_exc(exc)) from None
    cls = namespace.get("FusionModel")
    if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        raise CandidateError("load", "the code does not define `class FusionModel(torch.nn.Module)`")
    return cls


def _format_exc(exc: BaseException, limit: int = 4000) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text[-limit:]


def _check_logits(out: Any, batch: int, num_classes: int, where: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise CandidateError("smoke", f"{where}: forward returned {type(out).__name__}, expected a Tensor of logits")
    if tuple(out.shape) != (batch, num_classes):
        raise CandidateError("smoke", f"{where}: forward returned shape {list(out.shape)}, expected [{batch}, {num_classes}]")
    if not torch.isfinite(out).all():
        raise CandidateError("smoke", f"{where}: forward returned NaN or inf")
    return out


def smoke_test(cls: type, data: WorkerData, seed: int) -> None:
    """Instantiate; forward+backward in train mode at batch 1 and 3; forward in eval mode."""
    torch.manual_seed(seed)
    try:
        model = cls(dict(data.input_shapes), data.num_classes)
    except Exception as exc:  # noqa: BLE001
        raise CandidateError("smoke", "FusionModel(input_shapes, num_classes) raised:\n" + _format_exc(exc)) from None
    for b in SMOKE_BATCHES:
        batch = _select(data.train_inputs, slice(0, b))
        try:
            model.train()
            out = _check_logits(model(**batch), b, data.num_classes, f"train mode, batch {b}")
            F.cross_entropy(out.float(), data.train_labels[:b]).backward()
            model.zero_grad(set_to_none=True)
            model.eval()
            with torch.no_grad():
                _check_logits(model(**batch), b, data.num_classes, f"eval mode, batch {b}")
        except CandidateError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CandidateError("smoke", f"forward/backward at batch {b} raised:\n" + _format_exc(exc)) from None


def trace_and_claim(model: torch.nn.Module, data: WorkerData, sock: socket.socket) -> None:
    """Trace the eval-mode forward, then send this process's claim (params, FLOPs per sample on
    the traced batch: only for the cheap budget check before training) and the graph with its
    tensor constants, for the trusted replay."""
    val = data.eval_inputs["val"]
    batch = min(graph.TRACE_BATCH, next(iter(val.values())).shape[0])
    try:
        with torch.random.fork_rng():  # tracing runs the forward once; training must not notice
            traced = graph.trace(model, _select(val, slice(0, batch)))
    except graph.GraphError as exc:
        raise CandidateError("trace", str(exc)) from None
    params = sum(_NUMEL(p) for p in _MODULE_PARAMETERS(model))
    wire.send(sock, {"type": "smoke_ok", "params": int(params), "flops": int(traced.flops)})
    wire.send(sock, {"type": "graph", "batch": traced.batch}, np.frombuffer(traced.graph, dtype=np.uint8))
    weights.send_tensors(sock, traced.constants, graph.CONSTANTS_EPOCH)


def warm_up() -> None:
    """Run trusted code through every lazy import a candidate would trigger (the FLOP formulas'
    first use alone costs ~3 s), so forked children start warm."""
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.GELU())
    _exercise(torch.nn.Sequential(model, layer), torch.randn(2, 3, 8))
    _warm_zoo()


def _exercise(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Forward, backward, an optimizer step, a trace and its replay: a little of everything a job does."""
    model(x).sum().backward()
    torch.optim.AdamW(model.parameters()).step()
    traced = graph.trace(model, {"input": x})
    graph.replay(graph.decode(traced.graph), graph.model_state(model), traced.constants, {"input": x}, x.shape[0],
                 lambda inp, i: {"input": inp["input"][i]})


def _warm_zoo() -> None:
    """Each zoo member once (forward, backward, trace) on tiny inputs: the first call of an operator
    in a process is slow, and candidates are built from the same operators. Forked children inherit
    the warm state (the smoke run and trace of a GMU child: 50 -> 30 ms). The random state is left as it was."""
    from autofusion.zoo import ZOO_NAMES, zoo_source

    with torch.random.fork_rng():
        shapes = {"vector": (6,), "tokens": (4, 5)}
        x = {"vector": torch.randn(3, 6), "tokens": torch.randn(3, 4, 5), "tokens_mask": torch.tensor([[True] * 4, [True, False, False, False], [True] * 2 + [False] * 2])}
        for name in ZOO_NAMES:
            model = load_candidate(zoo_source(name))(shapes, 3)
            F.cross_entropy(model(**x), torch.zeros(3, dtype=torch.long)).backward()
            graph.trace(model, x)


def prefault() -> None:
    """Trusted code for a spare child waiting for its job (see `sandbox/zygote.py`): `_exercise` on a
    tiny model, so that the copy-on-write page faults a job would take happen before it starts. The
    memory-mapped train features are not read here: a replay never touches them, and on a large task
    that read would cost more than it saves. The random state is left as it was."""
    with torch.random.fork_rng():
        _exercise(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)),
                  torch.randn(4, 8))


def _lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def predict(model: torch.nn.Module, inputs: dict[str, torch.Tensor], label_mask: torch.Tensor | None) -> np.ndarray:
    _MODULE_TRAIN(model, False)
    n = next(iter(inputs.values())).shape[0]
    chunks = []
    with torch.no_grad():
        for start in range(0, n, EVAL_BATCH):
            out = model(**_select(inputs, slice(start, start + EVAL_BATCH)))
            chunks.append(_masked(out.float(), None if label_mask is None else label_mask[start:start + EVAL_BATCH]))
    return torch.cat(chunks).detach().cpu().numpy().astype(np.float32)


def _train_subset(data: WorkerData, settings: TrainSettings) -> torch.Tensor:
    n = data.train_labels.shape[0]
    if settings.data_fraction >= 1.0:
        return torch.arange(n)  # the full split: shuffling alone, as in a plain training loop
    order = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed + 7919))
    return order[: max(1, int(round(n * settings.data_fraction)))]


def train(cls: type, data: WorkerData, settings: TrainSettings, sock: socket.socket) -> None:
    """Train, streaming val and test logits after each epoch; the parent selects and stops."""
    random.seed(settings.seed)
    np.random.seed(settings.seed % 2**32)
    torch.manual_seed(settings.seed)
    model = cls(dict(data.input_shapes), data.num_classes)
    trace_and_claim(model, data, sock)
    reply = wire.recv(sock)
    if reply.type != "go":
        return
    export_weights = reply.header.get("export_weights") is True  # final training: weights follow each epoch
    subset = _train_subset(data, settings)
    steps_per_epoch = math.ceil(len(subset) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = None  # a constant rate without warm-up needs none (its step costs ~0.1 ms per batch)
    if settings.schedule != "constant" or settings.warmup_epochs:
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: _lr_factor(s, total_steps, settings.warmup_epochs * steps_per_epoch, settings.schedule))
    shuffle = torch.Generator().manual_seed(settings.seed)
    for epoch in range(settings.epochs):
        started = time.perf_counter()
        loss_sum, seen = _train_epoch(model, data, subset, settings, optimizer, scheduler, shuffle, epoch)
        weights.send_tensors(sock, graph.model_state(model), epoch)  # what the parent replays, first: it may replay while we predict
        val_logits = predict(model, data.eval_inputs["val"], data.eval_label_masks["val"])
        seconds = time.perf_counter() - started
        wire.send(sock, {"type": "epoch", "epoch": epoch, "train_loss": loss_sum / seen, "seconds": seconds}, val_logits)
        test_logits = predict(model, data.eval_inputs["test"], data.eval_label_masks["test"])
        wire.send(sock, {"type": "epoch_test", "epoch": epoch}, test_logits)
        if export_weights:
            weights.send_state_dict(sock, model, epoch)


def replay_job(data: WorkerData, settings: TrainSettings, sock: socket.socket, deadline: float) -> None:
    """Trusted code in a fresh sandboxed process (no candidate code runs here): replay a graph with
    each set of tensors the parent sends (an epoch's parameters and buffers) and return val and test
    logits and FLOPs per sample, until the parent closes the connection."""
    def next_frame(limit: int = settings.max_memory_mb << 20) -> wire.Frame:
        return wire.recv(sock, deadline=deadline, max_array_bytes=limit)

    try:
        frame = next_frame()
        if frame.type != "graph" or frame.array is None or frame.array.dtype != np.uint8:
            raise graph.GraphError(f"expected the graph, got {frame.type!r}")
        batch = frame.header.get("batch")
        if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= EVAL_BATCH:
            raise graph.GraphError(f"bad batch size {batch!r}")
        program = graph.decode(frame.array.tobytes())
        limit = settings.max_memory_mb << 20
        constants = weights.recv_state_dict(next_frame, graph.CONSTANTS_EPOCH, limit)
        while True:
            try:
                request = next_frame()
            except wire.WireClosed:
                return  # the parent has what it needs
            if request.type != "replay":
                raise graph.GraphError(f"expected a replay request, got {request.type!r}")
            epoch = request.header.get("epoch")
            state = weights.recv_state_dict(next_frame, epoch, limit)
            flops, rows = 0, 0
            for split in ("val", "test"):
                logits, counted = graph.replay(program, state, constants, data.eval_inputs[split], batch, _select)
                flops, rows = flops + counted * logits.shape[0], rows + logits.shape[0]
                mask = data.eval_label_masks[split]
                wire.send(sock, {"type": "replayed", "split": split, "epoch": epoch}, _masked(logits, mask).numpy().astype(np.float32))
            wire.send(sock, {"type": "replay_done", "epoch": epoch, "flops": flops // max(1, rows)})
    except (graph.GraphError, wire.WireError) as exc:
        wire.send(sock, {"type": "error", "stage": "verify", "error": str(exc)[:4000]})


def _train_epoch(model, data, subset, settings, optimizer, scheduler, shuffle, epoch) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    model.train()
    order = subset[torch.randperm(len(subset), generator=shuffle)]
    loss_sum, seen = 0.0, 0
    for start in range(0, len(order), settings.batch_size):
        idx = order[start:start + settings.batch_size]
        labels = data.train_labels[idx]
        lmask = None if data.train_label_mask is None else data.train_label_mask[idx]
        logits = model(**_select(data.train_inputs, idx))
        loss = F.cross_entropy(_masked(logits.float(), lmask), labels)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise CandidateError("train", f"training loss became {value} at epoch {epoch}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += value * len(idx)
        seen += len(idx)
    return loss_sum, seen


def run_job(code: str, data: WorkerData, settings: TrainSettings, sock: socket.socket, smoke_only: bool) -> None:
    """Entry point in the child: every fault of the candidate becomes an `error` frame."""
    stage = "load"
    try:
        cls = load_candidate(code)
        stage = "smoke"
        smoke_test(cls, data, settings.seed)
        if smoke_only:
            torch.manual_seed(settings.seed)
            trace_and_claim(cls(dict(data.input_shapes), data.num_classes), data, sock)  # untraceable code is caught now
            return
        stage = "train"
        train(cls, data, settings, sock)
    except CandidateError as exc:
        wire.send(sock, {"type": "error", "stage": exc.stage, "error": str(exc)})
    except wire.WireError:
        pass  # the parent has gone or killed the conversation; nothing to report to
    except BaseException as exc:  # noqa: BLE001 - candidate faults (even SystemExit) are data
        wire.send(sock, {"type": "error", "stage": stage, "error": _format_exc(exc)})
