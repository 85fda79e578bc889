"""Generators: the offline program synthesizer (`synth/`) and the LLM generator (`llm.py`)."""

from autofusion.generators.base import (
    CROSSOVER,
    FAMILIES,
    FRESH,
    MUTATE_LARGE,
    MUTATE_SMALL,
    OPERATORS,
    Generated,
    GenerationFailed,
    GenerationStopped,
    GenerationRequest,
    Generator,
    Parent,
    Validator,
)

__all__ = [
    "CROSSOVER",
    "FAMILIES",
    "FRESH",
    "MUTATE_LARGE",
    "MUTATE_SMALL",
    "OPERATORS",
    "Generated",
    "GenerationFailed",
    "GenerationStopped",
    "GenerationRequest",
    "Generator",
    "Parent",
    "Validator",
]
