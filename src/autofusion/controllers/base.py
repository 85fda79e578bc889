"""The controller interface: choose the next search action from a read-only history.

A controller never calls a generator, an LLM or the sandbox. It sees `History` (immutable records of
finished candidates), returns a `Proposal` (an `Action` — operator x fusion-family hint — plus the
parents it applies to), and is told each result through `observe`. All randomness comes from the
`random.Random` the loop passes to `propose`, derived from the run seed and the proposal index, so a
resumed run proposes exactly what the uninterrupted run would have. A controller with learned state
(A2C) returns it from `state_dict()`; the loop saves it in the run store after every observation.
"""

from __future__ import annotations

import abc
import random
from dataclasses import dataclass
from typing import Any, Iterable

from autofusion.generators.base import FAMILIES, OPERATORS


@dataclass(frozen=True)
class Action:
    operator: str  # one of generators.base.OPERATORS
    family: str | None = None  # one of generators.base.FAMILIES, or None for "any"

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(f"unknown operator {self.operator!r}; valid: {OPERATORS}")
        if self.family is not None and self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; valid: {FAMILIES}")

    def to_dict(self) -> dict[str, Any]:
        return {"operator": self.operator, "family": self.family}


@dataclass(frozen=True)
class Proposal:
    action: Action
    parent_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Record:
    """One finished candidate as controllers see it."""

    id: int
    origin: str
    status: str  # ok | rejected | failed | timeout
    val_accuracy: float | None
    params: int | None
    flops: int | None
    parent_ids: tuple[int, ...]
    action: Action | None
    has_genome: bool
    is_seed: bool  # a zoo member evaluated to seed the population (not counted in the budget)
    reward: float | None = None  # set by the loop from the configured objective

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.val_accuracy is not None


class History:
    """Read-only, ordered view of finished candidates (order = order of completion)."""

    def __init__(self, records: Iterable[Record], budget: int, n_proposed: int) -> None:
        self._records = tuple(records)
        self.budget = budget
        self.n_proposed = n_proposed

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._records)

    @property
    def records(self) -> tuple[Record, ...]:
        return self._records

    def ok(self) -> list[Record]:
        return [r for r in self._records if r.ok]

    def best(self) -> Record | None:
        ok = self.ok()
        return max(ok, key=lambda r: (r.val_accuracy, -r.id)) if ok else None

    def by_id(self, candidate_id: int) -> Record | None:
        return next((r for r in self._records if r.id == candidate_id), None)


class Controller(abc.ABC):
    name: str = "controller"

    @abc.abstractmethod
    def propose(self, history: History, rng: random.Random) -> Proposal:
        """The next action and its parents (ids from `history`)."""

    def observe(self, record: Record, history: History) -> None:
        """Learn from a finished candidate (default: nothing to learn)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def random_family(rng: random.Random) -> str | None:
    return rng.choice((None,) + tuple(FAMILIES))
