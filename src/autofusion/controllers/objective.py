"""The search objective: what a candidate is worth, the learning signal of A2C, and Pareto fronts.

`Objective` turns a finished candidate's real metrics into one number (`score`): val accuracy alone
(`{"kind": "accuracy"}`), or val accuracy minus log-scaled penalties for parameters and FLOPs above
a reference (`{"kind": "penalized", "params_weight": 0.02, "reference_params": 100000}`). The search
loop stores it as every record's `reward`, so every controller ranks by the same objective.
`Objective.shaped_reward` is the bounded signal an RL controller learns from: improvement over the
parent(s) and over the best so far, with fixed penalties for rejected, over-budget and failed
candidates. `pareto_front` keeps the candidates that no other beats on accuracy and cost at once.

This module computes numbers only; it never reads the store or runs anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from autofusion.errors import ConfigError

KINDS = ("accuracy", "penalized")
GAIN = 10.0  # an accuracy difference of 0.1 saturates tanh: typical search improvements are 0.005-0.1


class Scored(Protocol):
    """A finished candidate as the objective sees it (store rows and controller records both fit)."""

    id: int
    status: str
    val_accuracy: float | None
    params: int | None
    flops: int | None


@dataclass(frozen=True)
class Objective:
    kind: str = "accuracy"  # "accuracy" or "penalized"
    params_weight: float = 0.0  # penalty per doubling of parameters above reference_params
    flops_weight: float = 0.0  # penalty per doubling of FLOPs above reference_flops
    reference_params: float | None = None  # parameters allowed for free (required with params_weight)
    reference_flops: float | None = None  # forward FLOPs per sample allowed for free (with flops_weight)
    rejected_penalty: float = -0.6  # learning signal of a candidate the gate refused (duplicate, policy)
    budget_penalty: float = -0.8  # ... of one over the params/FLOPs budget (paid a smoke run)
    failed_penalty: float = -1.0  # ... of one that crashed or timed out (paid for training)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"objective kind={self.kind!r} is unknown; choose one of {', '.join(KINDS)}")
        if self.kind == "accuracy" and (self.params_weight or self.flops_weight):
            raise ConfigError('objective kind="accuracy" takes no params_weight/flops_weight; use kind="penalized"')
        for name in ("params_weight", "flops_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"objective {name}={getattr(self, name)} must be >= 0")
        for weight, ref in (("params_weight", "reference_params"), ("flops_weight", "reference_flops")):
            value = getattr(self, ref)
            if getattr(self, weight) > 0 and (value is None or value <= 0):
                raise ConfigError(f"objective {weight} > 0 needs {ref} > 0 (the size allowed without penalty)")
        for name in ("rejected_penalty", "budget_penalty", "failed_penalty"):
            if not -1.0 <= getattr(self, name) <= 0.0:
                raise ConfigError(f"objective {name}={getattr(self, name)} must be in [-1, 0]")

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Objective:
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"unknown objective keys {sorted(unknown)}; valid keys: {sorted(known)}")
        for key, value in raw.items():
            if key != "kind" and value is not None and not isinstance(value, (int, float)):
                raise ConfigError(f"objective {key}={value!r} must be a number")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------------------ scores

    def score(self, val_accuracy: float, params: int | None, flops: int | None) -> float:
        """Val accuracy minus `weight * log2(size / reference)` for each size above its reference."""
        value = float(val_accuracy)
        if self.kind == "penalized":
            value -= self.params_weight * _excess_doublings(params, self.reference_params)
            value -= self.flops_weight * _excess_doublings(flops, self.reference_flops)
        return value

    def reward(self, row: Scored) -> float | None:
        """The `Search.reward` hook: the score of a successful candidate, None for any other."""
        if row.status != "ok" or row.val_accuracy is None:
            return None
        return self.score(row.val_accuracy, row.params, row.flops)

    def shaped_reward(self, status: str, stage: str | None, score: float | None, parent_score: float | None,
                      best_before: float | None) -> float:
        """The learning signal in [-1, 1]. A scored candidate gets [-0.5, 1]: a quarter for improving on
        its parent (or on the population's median, for a fresh design), a quarter for improving on
        the best so far, +0.5 for a new best; tanh keeps it bounded whatever the objective's scale.
        A candidate without a score gets its penalty (default: below any scored candidate)."""
        if score is None:
            if status == "rejected":
                return self.budget_penalty if stage == "budget" else self.rejected_penalty
            return self.failed_penalty
        reference = parent_score if parent_score is not None else best_before
        if reference is None:  # the very first candidate: nothing to compare with
            return 0.0
        over_parent = math.tanh(GAIN * (score - reference))
        over_best = math.tanh(GAIN * (score - best_before)) if best_before is not None else over_parent
        bonus = 0.5 if best_before is not None and score > best_before else 0.0
        return 0.25 * over_parent + 0.25 * over_best + bonus


def _excess_doublings(size: int | None, reference: float | None) -> float:
    if size is None or reference is None or size <= reference:
        return 0.0
    return math.log2(size / reference)


# ------------------------------------------------------------------------------- Pareto front


def pareto_front(points: Iterable[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
    """The (id, accuracy, cost) points that no other point beats: higher-or-equal accuracy at
    lower-or-equal cost, better in one. Sorted by cost; exact duplicates keep the lowest id."""
    ordered = sorted(points, key=lambda p: (p[2], -p[1], p[0]))
    front: list[tuple[int, float, float]] = []
    for point in ordered:
        if not front or point[1] > front[-1][1]:
            front.append(point)
    return front


def pareto_fronts(rows: Iterable[Scored], origins: dict[int, str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Accuracy vs params and accuracy vs FLOPs over the successful candidates among `rows`."""
    ok = [r for r in rows if r.status == "ok" and r.val_accuracy is not None]
    out: dict[str, list[dict[str, Any]]] = {}
    for cost in ("params", "flops"):
        points = [(r.id, float(r.val_accuracy), float(getattr(r, cost))) for r in ok if getattr(r, cost) is not None]
        out[cost] = [{"id": cid, "val_accuracy": acc, cost: int(c), **({"origin": origins[cid]} if origins else {})}
                     for cid, acc, c in pareto_front(points)]
    return out
