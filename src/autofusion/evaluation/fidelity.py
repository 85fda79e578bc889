"""Multi-fidelity: asynchronous successive halving (ASHA) over training epochs and data fraction.

Every new candidate is first trained at the cheapest rung; whenever an evaluation slot is free, the
best not-yet-promoted candidate among the top 1/eta of some rung's finished results is re-trained at
the next rung (highest rung first, as in ASHA, Li et al. 2020). A candidate that is never among the
top 1/eta of its rung stops there: that is the early stop of a candidate that cannot catch up. The
rungs are `min_epochs * eta**r` epochs and `min_data_fraction * eta**r` of the train split, each
capped at the full protocol (`TrainSettings.epochs`, `TrainSettings.data_fraction`); the last rung is
the full protocol, so finalists are compared at full fidelity. A promoted candidate trains again
from scratch (a child process is never reused, so there is no checkpoint to resume from).

Decisions are a pure function of the run store's evaluations at the base seed — purpose `rung` for a
cheaper rung, `search` for the full protocol; each row holds its fidelity —, so
after a crash the same promotions are derived again and nothing is lost or repeated. Only val accuracy
is used; test accuracy is never looked at. This module does not submit work: `search.py` asks it
which rung a new candidate starts at and which promotion to run next.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable

from autofusion.errors import ConfigError
from autofusion.evaluation.protocol import TrainSettings

MODES = ("off", "asha")
SEARCH_PURPOSES = ("rung", "search")  # cheaper rungs, and the full protocol


@dataclass(frozen=True)
class FidelitySettings:
    """Rung settings; every field has a default and a reason."""

    mode: str = "off"  # "asha" turns successive halving on; off by default: see README (benchmarks/throughput.py)
    eta: int = 3  # keep the top 1/eta of each rung (ASHA's usual reduction factor)
    min_epochs: int = 2  # epochs at the first rung: enough for the val curve to separate good from bad
    min_data_fraction: float = 1.0  # train-split fraction at the first rung (1.0: vary epochs only)

    def __post_init__(self) -> None:
        checks = {"mode": self.mode in MODES, "eta": self.eta >= 2, "min_epochs": self.min_epochs >= 1,
                  "min_data_fraction": 0 < self.min_data_fraction <= 1}
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"fidelity setting {name}={getattr(self, name)!r} is out of range; mode is one of "
                                  f"{MODES}, eta >= 2, min_epochs >= 1, 0 < min_data_fraction <= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "FidelitySettings":
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"unknown fidelity settings {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**raw)


@dataclass(frozen=True)
class Rung:
    index: int
    epochs: int
    data_fraction: float

    @property
    def fidelity(self) -> dict[str, Any]:
        """As stored in `evaluations.fidelity`."""
        return {"epochs": self.epochs, "data_fraction": self.data_fraction}

    def apply(self, settings: TrainSettings) -> TrainSettings:
        return settings.with_(epochs=self.epochs, data_fraction=self.data_fraction,
                              warmup_epochs=min(settings.warmup_epochs, self.epochs - 1))


@dataclass(frozen=True)
class Promotion:
    candidate_id: int
    rung: Rung  # the rung it is promoted *to*


def make_rungs(settings: FidelitySettings, train: TrainSettings) -> tuple[Rung, ...]:
    """The ladder, cheapest first; the last rung is always `train`'s full fidelity."""
    if settings.mode == "off":
        return (Rung(0, train.epochs, train.data_fraction),)
    rungs: list[Rung] = []
    for r in range(64):
        epochs = min(train.epochs, settings.min_epochs * settings.eta ** r)
        frac = min(train.data_fraction, round(settings.min_data_fraction * settings.eta ** r, 6))
        if rungs and (epochs, frac) == (rungs[-1].epochs, rungs[-1].data_fraction):
            break
        rungs.append(Rung(r, epochs, frac))
    return tuple(rungs)


class SuccessiveHalving:
    """Which rung a candidate starts at, and which promotion runs next — derived from evaluations."""

    def __init__(self, settings: FidelitySettings, train: TrainSettings, base_seed: int) -> None:
        self.settings = settings
        self.rungs = make_rungs(settings, train)
        self.base_seed = base_seed

    @property
    def first(self) -> Rung:
        return self.rungs[0]

    @property
    def full(self) -> Rung:
        return self.rungs[-1]

    def rung_of(self, fidelity: dict[str, Any] | None) -> Rung | None:
        return next((r for r in self.rungs if fidelity == r.fidelity), None)

    def ladder(self, evaluations: Iterable[dict[str, Any]], candidate_ids: set[int]) -> list[dict[int, float | None]]:
        """Per rung: candidate id -> val accuracy (None if that evaluation was not ok), for the
        `rung` and `search` evaluations at the base seed of the given candidates."""
        per_rung: list[dict[int, float | None]] = [{} for _ in self.rungs]
        for e in evaluations:
            if e["purpose"] not in SEARCH_PURPOSES or e["seed"] != self.base_seed or e["candidate_id"] not in candidate_ids:
                continue
            rung = self.rung_of(e["fidelity"])
            if rung is not None:
                per_rung[rung.index][e["candidate_id"]] = e["val_accuracy"] if e["status"] == "ok" else None
        return per_rung

    def next_promotion(self, evaluations: Iterable[dict[str, Any]], candidate_ids: set[int],
                       busy: set[int]) -> Promotion | None:
        """ASHA: from the highest rung down, the best candidate in the top floor(n_ok / eta) of its
        rung that has no result at the next rung and is not running (`busy`)."""
        per_rung = self.ladder(evaluations, candidate_ids)
        for r in range(len(self.rungs) - 2, -1, -1):
            ranked = sorted(((v, cid) for cid, v in per_rung[r].items() if v is not None), key=lambda t: (-t[0], t[1]))
            for _val, cid in ranked[: len(ranked) // self.settings.eta]:
                if cid not in per_rung[r + 1] and cid not in busy:
                    return Promotion(cid, self.rungs[r + 1])
        return None

    def reached(self, evaluations: Iterable[dict[str, Any]], candidate_ids: set[int]) -> dict[int, tuple[int, float]]:
        """Candidate id -> (highest rung with an ok result, its val accuracy): the ranking of finalists."""
        out: dict[int, tuple[int, float]] = {}
        for r, results in enumerate(self.ladder(evaluations, candidate_ids)):
            for cid, val in results.items():
                if val is not None:
                    out[cid] = (r, val)
        return out

    def budget_epochs(self, n_candidates: int) -> float:
        """Expected training epochs (times the data fraction) for `n_candidates` with full promotions."""
        total, n = 0.0, float(n_candidates)
        for rung in self.rungs:
            total += n * rung.epochs * rung.data_fraction
            n = math.floor(n / self.settings.eta)
        return total
