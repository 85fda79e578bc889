"""The offline program synthesizer: writes fusion modules from a typed genome, without an LLM.

`SynthGenerator` applies the request's operator (mutate_small, mutate_large, crossover, fresh) with
its fusion family to the parents' genomes, renders the result as candidate source and returns it
with the genome and a short note on the edit. The same request (seed included) gives the same code.
Parents without a genome (e.g. LLM-written code) are treated as absent; the note says so.

Public: `SynthGenerator`, `Genome`, `render`, `render_dict`, `preset_genome`, `ZOO_PRESETS`,
`random_genome`, `mutate`, `crossover`. This package never trains or runs candidates.
"""

from __future__ import annotations

import random
from typing import Any

from autofusion.errors import AutoFusionError
from autofusion.generators.base import (
    CROSSOVER, FRESH, MUTATE_LARGE, MUTATE_SMALL, OPERATORS, Generated, GenerationFailed,
    GenerationRequest, Generator, Validator,
)
from autofusion.generators.synth.genome import Encoder, Fusion, Genome, Head
from autofusion.generators.synth.operators import (
    FAMILY_FUSIONS, crossover, describe_changes, mutate, random_genome,
)
from autofusion.generators.synth.presets import ZOO_PRESETS
from autofusion.generators.synth.render import describe, render

__all__ = [
    "ZOO_PRESETS", "Encoder", "Fusion", "Genome", "Head", "SynthGenerator", "crossover", "describe",
    "mutate", "preset_genome", "random_genome", "render", "render_dict",
]


def preset_genome(name: str) -> dict[str, Any]:
    """The genome dict of zoo member `name` (renders to a twin of src/autofusion/zoo/<name>.py)."""
    if name not in ZOO_PRESETS:
        raise AutoFusionError(f"no synthesizer preset {name!r}; presets are {sorted(ZOO_PRESETS)}")
    return ZOO_PRESETS[name].to_dict()


def render_dict(genome: dict[str, Any]) -> str:
    """Candidate source for a genome dict (strictly parsed; AutoFusionError names a bad field)."""
    return render(Genome.from_dict(genome))


class SynthGenerator(Generator):
    """Generator that edits genomes and renders them; deterministic in `request.seed`."""

    name = "synth"

    def __init__(self, max_attempts: int = 5) -> None:
        if max_attempts < 1:
            raise AutoFusionError(f"max_attempts={max_attempts} must be >= 1")
        self.max_attempts = max_attempts  # draws tried when a validator rejects the code

    def generate(self, request: GenerationRequest, validate: Validator | None = None) -> Generated:
        if request.operator not in OPERATORS:
            raise AutoFusionError(f"unknown operator {request.operator!r}; use one of {list(OPERATORS)}")
        rng = random.Random(f"synth:{request.seed}")
        rejections: list[str] = []
        for attempt in range(1, self.max_attempts + 1):
            genome, notes = self._propose(request, rng)
            code = render(genome)
            error = validate(code) if validate is not None else None
            if error is None:
                if rejections:
                    notes += f" (after {len(rejections)} rejected draw(s))"
                return Generated(code=code, origin="synth", genome=genome.to_dict(), notes=notes,
                                 attempts=attempt)
            rejections.append(error.strip().splitlines()[-1] if error.strip() else "rejected")
        raise GenerationFailed(
            f"synth: {self.max_attempts} draws for {request.operator} were all rejected; last: {rejections[-1]}")

    def _propose(self, request: GenerationRequest, rng: random.Random) -> tuple[Genome, str]:
        op, family = request.operator, request.family
        parents, skipped = _parent_genomes(request)
        note = f" ({skipped} parent(s) without a genome ignored)" if skipped else ""
        tag = f" [{family}]" if family else ""
        if op == FRESH or not parents:
            genome = random_genome(rng, family)
            why = "fresh" if op == FRESH else f"{op}: no parent genome, fresh design instead"
            return genome, f"{why}{tag}: {describe(genome).splitlines()[0]}{note}"
        if op in (MUTATE_SMALL, MUTATE_LARGE):
            parent_id, parent = parents[0]
            strength = "small" if op == MUTATE_SMALL else "large"
            child = mutate(parent, rng, strength, family)
            return child, f"{op}{tag} of #{parent_id}: {describe_changes(parent, child)}{note}"
        assert op == CROSSOVER
        if len(parents) < 2:
            (parent_id, parent), = parents
            child = mutate(parent, rng, "large", family)
            return child, (f"crossover needs two parent genomes, got one: mutate_large{tag} of "
                           f"#{parent_id} instead: {describe_changes(parent, child)}{note}")
        (id_a, a), (id_b, b) = parents[:2]
        # The family hint decides whose fusion operator the child keeps, when one parent has it.
        in_family = [g for g in (a, b) if family is not None and g.fusion.op in FAMILY_FUSIONS[family]]
        child = crossover(a, b, rng, fusion_from=in_family[0] if len(in_family) == 1 else None)
        return child, (f"crossover of #{id_a} and #{id_b}: from #{id_b}: "
                       f"{describe_changes(a, child)}{note}")


def _parent_genomes(request: GenerationRequest) -> tuple[list[tuple[int, Genome]], int]:
    """Parents with a readable genome, and how many had none (or an unreadable one)."""
    found: list[tuple[int, Genome]] = []
    skipped = 0
    for parent in request.parents:
        if parent.genome is None:
            skipped += 1
            continue
        try:
            found.append((parent.id, Genome.from_dict(parent.genome)))
        except AutoFusionError:
            skipped += 1
    return found, skipped
