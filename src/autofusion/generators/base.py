"""The generator interface: turn one search request into candidate source code.

A generator never trains, never runs candidate code and never talks to the controller. It receives
a `GenerationRequest` (the task contract, the edit the bridge derived from the controller's action,
the parents) and returns a `Generated` record, or raises `GenerationFailed` with a reason that the
search records as the candidate's failure (an LLM outage, a reply with no code...).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable

from autofusion.tasks.format import TaskSpec

# Operators of the action space (the bridge maps each to a generator edit).
MUTATE_SMALL = "mutate_small"
MUTATE_LARGE = "mutate_large"
CROSSOVER = "crossover"
FRESH = "fresh"
OPERATORS = (MUTATE_SMALL, MUTATE_LARGE, CROSSOVER, FRESH)

# Fusion-family hints of the action space.
FAMILIES = ("attention", "gating", "tensor", "pooling", "depth")


@dataclass(frozen=True)
class Parent:
    """A candidate already in the population, as a generator may see it."""

    id: int
    code: str
    genome: dict[str, Any] | None = None  # present for synthesizer-made or zoo candidates
    val_accuracy: float | None = None
    params: int | None = None
    flops: int | None = None


@dataclass(frozen=True)
class GenerationRequest:
    task: TaskSpec
    operator: str  # one of OPERATORS
    family: str | None  # one of FAMILIES, or None for "no preference"
    instruction: str  # natural-language instruction from the bridge (for LLM generators)
    parents: tuple[Parent, ...] = ()
    seed: int = 0  # generators draw all randomness from this seed, so a run is replayable
    context: dict[str, Any] = field(default_factory=dict)  # history summary, budgets, metrics to beat


@dataclass(frozen=True)
class Generated:
    code: str
    origin: str  # "synth", "llm:<model>", ...
    genome: dict[str, Any] | None = None
    notes: str = ""
    attempts: int = 1  # LLM generators: how many replies were needed (repairs included)


class GenerationFailed(Exception):
    """The generator could not produce a candidate for this request (recorded, not fatal)."""


class GenerationStopped(GenerationFailed):
    """The generator can produce no more candidates (e.g. its LLM call or token budget is spent):
    the search stops proposing, cleanly, and goes on to the final comparison."""


# A validator returns None when the code passes the gate and smoke run, else the error text.
Validator = Callable[[str], "str | None"]


class Generator(abc.ABC):
    """Produces candidate source code for a request."""

    name: str = "generator"

    @abc.abstractmethod
    def generate(self, request: GenerationRequest, validate: Validator | None = None) -> Generated:
        """Return one candidate. `validate` lets a generator repair its own output before returning."""
