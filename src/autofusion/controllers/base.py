"""The controller interface: choose the next search action from a read-only history.

A controller never calls a generator, an LLM or the sandbox. It sees `History` (immutable records of
finished candidates), returns a `Proposal` (an `Action` — operator x fusion-family hint — plus the
parents it applies to), and is told each result through `observe`. All randomness comes from the
`random.Random` the loop passes to `propose`, derived from the run seed and the proposal index, so a
resumed run proposes exactly what the uninterrupted run would have. A controller with learned state
(A2C) returns it from `state_dict()`; the loop saves it in the run store after every observation.

The action space is defined here and nowhere else: `OPERATORS` x (`FAMILIES` or no hint) x
`SELECTIONS` (how the parents are picked from the population). The operator and family vocabularies
are the generator interface's (`generators.base`); this module combines them into actions.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from autofusion.generators.base import CROSSOVER, FAMILIES, FRESH, MUTATE_LARGE, MUTATE_SMALL, OPERATORS

# How a controller picks parent(s) from the population (the third axis of the action space).
SELECTIONS = ("best", "tournament", "recent", "random")
FAMILY_HINTS: tuple[str | None, ...] = (None, *FAMILIES)  # None: no family preference
PARENTS_NEEDED = {MUTATE_SMALL: 1, MUTATE_LARGE: 1, CROSSOVER: 2, FRESH: 0}


@dataclass(frozen=True)
class Action:
    operator: str  # one of OPERATORS
    family: str | None = None  # one of FAMILIES, or None for "any"
    selection: str | None = None  # one of SELECTIONS, when the controller chose how parents were picked

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(f"unknown operator {self.operator!r}; valid: {OPERATORS}")
        if self.family is not None and self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; valid: {FAMILIES}")
        if self.selection is not None and self.selection not in SELECTIONS:
            raise ValueError(f"unknown selection {self.selection!r}; valid: {SELECTIONS}")

    @property
    def n_parents(self) -> int:
        return PARENTS_NEEDED[self.operator]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"operator": self.operator, "family": self.family}
        if self.selection is not None:  # kept out otherwise, so older runs' stored actions stay identical
            out["selection"] = self.selection
        return out


ACTION_SPACE: tuple[Action, ...] = tuple(Action(op, fam) for op in OPERATORS for fam in FAMILY_HINTS)


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
    reward: float | None = None  # set by the loop from the configured objective (None unless ok)
    stage: str | None = None  # where a rejected/failed candidate stopped ("gate", "budget", ...)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.val_accuracy is not None

    @property
    def score(self) -> float | None:
        """The objective's value (falls back to val accuracy when the loop set no reward)."""
        if not self.ok:
            return None
        return self.reward if self.reward is not None else self.val_accuracy


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

    def best_scored(self) -> Record | None:
        """The best candidate by the objective (equal to `best()` when the objective is accuracy)."""
        ok = self.ok()
        return max(ok, key=lambda r: (r.score, -r.id)) if ok else None

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
    return rng.choice(FAMILY_HINTS)


def select_parents(population: list[Record], selection: str, n: int, rng: random.Random,
                   tournament_size: int = 4) -> tuple[int, ...]:
    """Ids of `n` distinct parents picked from `population` (ordered oldest first) by `selection`;
    fewer when the population is smaller. Ties in score go to the most recent candidate."""
    pool = list(population)
    chosen: list[int] = []
    for _ in range(min(n, len(pool))):
        if selection == "best":
            pick = max(pool, key=lambda r: (r.score or 0.0, r.id))
        elif selection == "recent":
            pick = pool[-1]
        elif selection == "tournament":
            contestants = rng.sample(pool, min(tournament_size, len(pool)))
            pick = max(contestants, key=lambda r: (r.score or 0.0, r.id))
        elif selection == "random":
            pick = rng.choice(pool)
        else:
            raise ValueError(f"unknown selection {selection!r}; valid: {SELECTIONS}")
        chosen.append(pick.id)
        pool.remove(pick)
    return tuple(chosen)
