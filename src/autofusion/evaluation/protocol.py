"""The evaluation protocol: training settings and the records an evaluation produces.

One `TrainSettings` drives every proxy training — candidates, zoo baselines and final re-training —
so that all of them are compared under the same protocol (DESIGN §5). `EvalResult` is what the
trusted side returns: every metric in it was computed by the trusted parent from raw predictions.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from autofusion.errors import ConfigError


class Status(str, enum.Enum):
    OK = "ok"
    REJECTED = "rejected"  # static gate, smoke run or budget said no: no training was paid for
    FAILED = "failed"  # raised, produced bad output, crashed or exceeded memory while training
    TIMEOUT = "timeout"  # killed at the wall-clock limit


@dataclass(frozen=True)
class TrainSettings:
    """Proxy-training settings; every field has a default and a reason."""

    epochs: int = 10  # short proxy training: ranks candidates, not a final score
    batch_size: int = 64  # small tasks on CPU train fastest with small batches
    lr: float = 1e-3  # AdamW default that works for small fusion heads
    weight_decay: float = 0.01  # AdamW's usual decoupled decay
    patience: int = 4  # stop after this many epochs without a new best val accuracy (0: never)
    grad_clip: float = 1.0  # keeps an unstable candidate from blowing up into NaN
    warmup_epochs: int = 0  # linear warm-up before the schedule (final training uses 1+)
    schedule: str = "constant"  # "constant" or "cosine" learning rate after warm-up
    data_fraction: float = 1.0  # multi-fidelity: train on this fraction of the train split
    seed: int = 0  # seeds init, shuffling and dropout in the candidate's process
    threads: int = 0  # torch threads in the candidate's process; 0: cores / parallel evaluations
    timeout_s: float = 300.0  # wall clock for the whole evaluation, smoke run included
    max_memory_mb: int = 4096  # address-space growth allowed to the candidate's process
    smoke_timeout_s: float = 30.0  # wall clock for the smoke run alone

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "patience": self.patience >= 0,
            "warmup_epochs": 0 <= self.warmup_epochs < self.epochs or self.warmup_epochs == 0,
            "schedule": self.schedule in ("constant", "cosine"),
            "data_fraction": 0 < self.data_fraction <= 1,
            "threads": self.threads >= 0,
            "timeout_s": self.timeout_s > 0,
            "max_memory_mb": self.max_memory_mb >= 256,
            "smoke_timeout_s": self.smoke_timeout_s > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"training setting {name}={getattr(self, name)!r} is out of range; see TrainSettings in autofusion/evaluation/protocol.py for the valid values")

    def with_(self, **changes: Any) -> "TrainSettings":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TrainSettings":
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"unknown training settings {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**raw)


@dataclass(frozen=True)
class Curves:
    """Per-epoch measurements. `train_loss` is reported by the candidate's process (untrusted,
    for plotting only); val accuracy is computed by the parent."""

    train_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class EvalResult:
    status: Status
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    params: int | None = None
    flops: int | None = None  # forward FLOPs per sample, traced with torch.utils.flop_counter
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    best_epoch: int | None = None
    epochs_run: int = 0
    error: str | None = None
    stage: str | None = None  # where it stopped: gate, smoke, budget, train, predict
    curves: Curves = field(default_factory=Curves)
    settings: TrainSettings = field(default_factory=TrainSettings)
    breakdown: dict[str, Any] | None = None  # per-category test accuracy when the task has metadata

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.value
        return out
