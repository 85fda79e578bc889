"""Search operators over genomes: random draws, small/large mutations, crossover, edit notes.

All randomness comes from the `random.Random` passed in, so a seed replays a run. Every genome these
functions return is valid (`repair` fixes gene combinations that `Genome.validate` refuses) and
differs from its parent(s). A `family` (one of base.FAMILIES) biases the draw or the edit toward that
fusion family. This file does not render code or know about requests (see `__init__.py`).
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Callable

from autofusion.errors import AutoFusionError
from autofusion.generators.base import FAMILIES
from autofusion.generators.synth.genome import (
    ACTIVATIONS, ATTENTION_FUSIONS, DIRECTIONS, DROPOUTS, ENCODER_KINDS, FUSIONS, N_HEADS, NORMS,
    POOLINGS, POSITIONS, RANKS, TENSOR_BUDGETS, WIDTHS, Encoder, Fusion, Genome, Head,
)

FAMILY_FUSIONS: dict[str, tuple[str, ...]] = {
    "attention": ATTENTION_FUSIONS,
    "gating": ("gating", "film"),
    "tensor": ("tfn", "lmf", "product"),
    "pooling": ("concat", "sum", "late"),
    "depth": FUSIONS,
}
FAMILY_BIAS = 0.75  # probability that a family-biased choice follows the family
GENES_TO_FLIP = {"small": (1, 2), "large": (1, 1)}


def _check_family(family: str | None) -> None:
    if family is not None and family not in FAMILIES:
        raise AutoFusionError(f"unknown fusion family {family!r}; use one of {list(FAMILIES)} or None")


def _neighbour(rng: random.Random, choices: tuple[Any, ...], value: Any) -> Any:
    """A value next to `value` in an ordered vocabulary (one step up or down)."""
    i = choices.index(value)
    steps = [j for j in (i - 1, i + 1) if 0 <= j < len(choices)]
    return choices[rng.choice(steps)]


def _other(rng: random.Random, choices: tuple[Any, ...], value: Any) -> Any:
    return rng.choice([c for c in choices if c != value])


def _draw_op(rng: random.Random, family: str | None) -> str:
    if family is not None and rng.random() < FAMILY_BIAS:
        return rng.choice(FAMILY_FUSIONS[family])
    return rng.choice(FUSIONS)


def _draw_encoder(rng: random.Random, family: str | None = None) -> Encoder:
    kinds = ("linear", "mlp", "transformer") if family == "depth" else ENCODER_KINDS
    return Encoder(rng.choice(kinds), rng.choice((1, 2)))


def random_genome(rng: random.Random, family: str | None = None) -> Genome:
    """A fresh valid genome; `family` biases the fusion operator (and depth genes for 'depth')."""
    _check_family(family)
    op = _draw_op(rng, family)
    overrides = {p: _draw_encoder(rng, family) for p in range(2) if rng.random() < 0.25}
    deep = family == "depth"
    genome = Genome(
        width=rng.choice(WIDTHS),
        heads=rng.choice(N_HEADS[1:]),
        dropout=rng.choice(DROPOUTS),
        activation=rng.choice(ACTIVATIONS),
        encoder=_draw_encoder(rng, family),
        pool=rng.choice(POOLINGS),
        positions=rng.choice(POSITIONS),
        fusion=Fusion(
            op=op, query=rng.choice((0, 0, 1)), direction=rng.choice(DIRECTIONS),
            depth=rng.choice((2, 3) if deep else (1, 1, 2)), rank=rng.choice(RANKS),
            tensor_budget=rng.choice(TENSOR_BUDGETS), norm=rng.choice(NORMS),
            residual=rng.random() < 0.8,
        ),
        head=Head(rng.choice(("linear", "mlp", "mlp")), rng.choice((2, 3) if deep else (1, 1, 2))),
    )
    return repair(genome.with_overrides(overrides))


def repair(genome: Genome) -> Genome:
    """Fix gene combinations that `validate` refuses, changing as little as possible."""
    try:
        genome._check_size()
    except AutoFusionError:
        genome = replace(genome, width=128)
    if genome.width % genome.heads:
        genome = replace(genome, heads=max(h for h in N_HEADS if genome.width % h == 0))
    if genome.pool == "cls" and genome.fusion.op not in ATTENTION_FUSIONS:
        genome = replace(genome, pool="mean")
    if genome.pool == "cls" and genome.fusion.op == "cross_attention" \
            and genome.fusion.direction != "query_attends":
        genome = replace(genome, fusion=replace(genome.fusion, direction="query_attends"))
    return genome.validate()


# --- edits: each returns a new genome (possibly equal to the input; callers retry) -------------

def _set_fusion(genome: Genome, **changes: Any) -> Genome:
    return replace(genome, fusion=replace(genome.fusion, **changes))


def _edit_width(rng: random.Random, g: Genome) -> Genome:
    return replace(g, width=_neighbour(rng, WIDTHS, g.width))


def _edit_dropout(rng: random.Random, g: Genome) -> Genome:
    return replace(g, dropout=_neighbour(rng, DROPOUTS, g.dropout))


def _edit_heads(rng: random.Random, g: Genome) -> Genome:
    return replace(g, heads=_neighbour(rng, N_HEADS, g.heads))


def _edit_activation(rng: random.Random, g: Genome) -> Genome:
    return replace(g, activation=_other(rng, ACTIVATIONS, g.activation))


def _edit_pool(rng: random.Random, g: Genome) -> Genome:
    return replace(g, pool=_other(rng, POOLINGS, g.pool))


def _edit_positions(rng: random.Random, g: Genome) -> Genome:
    return replace(g, positions=_other(rng, POSITIONS, g.positions))


def _edit_norm(rng: random.Random, g: Genome) -> Genome:
    return _set_fusion(g, norm=_other(rng, NORMS, g.fusion.norm))


def _edit_residual(rng: random.Random, g: Genome) -> Genome:
    return _set_fusion(g, residual=not g.fusion.residual)


def _edit_query(rng: random.Random, g: Genome) -> Genome:
    return _set_fusion(g, query=_other(rng, (0, 1, 2), g.fusion.query) if g.fusion.query < 3 else 0)


def _edit_direction(rng: random.Random, g: Genome) -> Genome:
    return _set_fusion(g, direction=_other(rng, DIRECTIONS, g.fusion.direction))


def _edit_rank(rng: random.Random, g: Genome) -> Genome:
    return _set_fusion(g, rank=_neighbour(rng, RANKS, g.fusion.rank))


def _edit_budget(rng: random.Random, g: Genome) -> Genome:
    return _set_fusion(g, tensor_budget=_neighbour(rng, TENSOR_BUDGETS, g.fusion.tensor_budget))


def _edit_head_depth(rng: random.Random, g: Genome) -> Genome:
    if g.head.kind == "linear":
        return replace(g, head=Head("mlp", 1))
    return replace(g, head=Head("mlp", _neighbour(rng, (1, 2, 3), g.head.depth)))


def _edit_fusion_depth(rng: random.Random, g: Genome) -> Genome:
    return _set_fusion(g, depth=_neighbour(rng, (1, 2, 3), g.fusion.depth))


def _edit_fusion_op(rng: random.Random, g: Genome, family: str | None = None) -> Genome:
    op = _draw_op(rng, family)
    return _set_fusion(g, op=op if op != g.fusion.op else _other(rng, FUSIONS, g.fusion.op))


def _edit_encoder(rng: random.Random, g: Genome, family: str | None = None) -> Genome:
    """Change the default encoder or the encoder of modality 0 or 1."""
    target = rng.choice(("default", 0, 1))
    current = g.encoder if target == "default" else g.encoder_at(target)
    new = _draw_encoder(rng, family)
    if new == current:
        new = Encoder(_other(rng, ENCODER_KINDS, current.kind), current.layers)
    if target == "default":
        overrides = dict(g.encoder_overrides)
        return replace(g, encoder=new).with_overrides(overrides)
    return g.with_overrides({**dict(g.encoder_overrides), target: new})


def _edit_encoder_layers(rng: random.Random, g: Genome) -> Genome:
    e = g.encoder
    kind = e.kind if e.kind in ("mlp", "transformer") else rng.choice(("mlp", "transformer"))
    return replace(g, encoder=Encoder(kind, 2 if e.layers == 1 or kind != e.kind else 1)) \
        .with_overrides(dict(g.encoder_overrides))


def _edit_head_kind(rng: random.Random, g: Genome) -> Genome:
    return replace(g, head=Head("linear" if g.head.kind == "mlp" else "mlp", g.head.depth))


Edit = Callable[[random.Random, Genome], Genome]


def small_edits(g: Genome) -> dict[str, Edit]:
    """The local edits that matter for `g` (a gene its fusion ignores is not offered)."""
    op = g.fusion.op
    edits: dict[str, Edit] = {"width": _edit_width, "dropout": _edit_dropout,
                              "activation": _edit_activation, "pool": _edit_pool,
                              "head_depth": _edit_head_depth}
    if op in ATTENTION_FUSIONS or "transformer" in g.encoder_kinds():
        edits["heads"] = _edit_heads
    if op in ATTENTION_FUSIONS:
        edits["positions"] = _edit_positions
    if op != "late":
        edits["norm"] = _edit_norm
    if op in ("film", "cross_attention"):
        edits["residual"] = _edit_residual
        edits["query"] = _edit_query
    if op == "cross_attention":
        edits["direction"] = _edit_direction
    if op == "lmf":
        edits["rank"] = _edit_rank
    if op == "tfn":
        edits["tensor_budget"] = _edit_budget
    return edits


FAMILY_SMALL = {
    "attention": ("heads", "positions", "direction", "query", "residual"),
    "gating": ("residual", "norm", "activation", "query"),
    "tensor": ("rank", "tensor_budget", "width"),
    "pooling": ("pool",),
    "depth": ("head_depth", "width"),
}


def large_edits(g: Genome, family: str | None) -> dict[str, Edit]:
    edits: dict[str, Edit] = {
        "fusion": lambda rng, x: _edit_fusion_op(rng, x, family),
        "encoder": lambda rng, x: _edit_encoder(rng, x, family),
        "encoder_layers": _edit_encoder_layers,
        "head_kind": _edit_head_kind,
    }
    if g.fusion.op in ATTENTION_FUSIONS:
        edits["fusion_depth"] = _edit_fusion_depth
    return edits


FAMILY_LARGE = {"attention": ("fusion",), "gating": ("fusion",), "tensor": ("fusion",),
                "pooling": ("fusion",), "depth": ("encoder_layers", "fusion_depth", "head_kind")}


def _pick(rng: random.Random, edits: dict[str, Edit], preferred: tuple[str, ...]) -> Edit:
    favoured = [name for name in preferred if name in edits]
    if favoured and rng.random() < FAMILY_BIAS:
        return edits[rng.choice(favoured)]
    return edits[rng.choice(sorted(edits))]


def mutate(genome: Genome, rng: random.Random, strength: str = "small", family: str | None = None) -> Genome:
    """A valid genome that differs from `genome`: 1-2 local edits ("small") or one structural edit
    ("large": fusion operator, encoder kind, depth), biased toward `family`."""
    _check_family(family)
    if strength not in GENES_TO_FLIP:
        raise AutoFusionError(f"unknown mutation strength {strength!r}; use 'small' or 'large'")
    genome.validate()
    for _ in range(20):
        child = genome
        low, high = GENES_TO_FLIP[strength]
        for _ in range(rng.randint(low, high)):
            if strength == "small":
                edit = _pick(rng, small_edits(child), FAMILY_SMALL.get(family or "", ()))
            else:
                edit = _pick(rng, large_edits(child, family), FAMILY_LARGE.get(family or "", ()))
            child = repair(edit(rng, child))
        if child != genome:
            return child
    raise AutoFusionError(f"could not mutate genome {genome.to_dict()} in 20 tries (no gene can change)")


CROSSOVER_GROUPS = ("width", "heads", "dropout", "activation", "encoder", "encoder_overrides", "pool",
                    "positions", "fusion", "head")


def crossover(a: Genome, b: Genome, rng: random.Random, fusion_from: Genome | None = None) -> Genome:
    """Uniform crossover over gene groups (the fusion operator moves with its own genes), taking at
    least one group from each parent when they differ; the child is repaired to validity.
    `fusion_from` (a or b) forces whose fusion the child keeps."""
    a.validate()
    b.validate()
    differing = [name for name in CROSSOVER_GROUPS if getattr(a, name) != getattr(b, name)]
    if not differing:
        return mutate(a, rng, "small")
    forced = {"fusion"} if fusion_from is b else set()
    free = [name for name in differing if not (fusion_from is not None and name == "fusion")]
    for _ in range(20):
        take_b = forced | {name for name in free if rng.random() < 0.5}
        if len(differing) > 1 and take_b & set(differing) in (set(), set(differing)):
            continue
        child = repair(replace(a, **{name: getattr(b, name) for name in take_b}))
        if child not in (a, b) or len(differing) == 1:
            return child
    return repair(replace(fusion_from or a, width=(b if fusion_from is a else a).width))


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + ".") if value else {name: "{}"})
        else:
            out[name] = value
    return out


def describe_changes(before: Genome, after: Genome) -> str:
    """'width 64->96, fusion.op concat->gating' (genes that differ, in a stable order)."""
    old, new = flatten(before.to_dict()), flatten(after.to_dict())
    keys = sorted(set(old) | set(new))
    changes = [f"{k} {old.get(k, '-')}->{new.get(k, '-')}" for k in keys if old.get(k, "-") != new.get(k, "-")]
    return ", ".join(changes) if changes else "no change"
