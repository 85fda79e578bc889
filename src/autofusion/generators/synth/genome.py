"""The synthesizer's typed genome: a fusion architecture as a small tree of frozen dataclasses.

A `Genome` says how each modality is encoded, how token streams are pooled, which fusion operator
combines the modalities, and what classifier head reads the result. It is independent of the task:
the rendered module reads `input_shapes` at init, so one genome fits any number of vector or token
modalities. Per-modality genes are keyed by modality *position* (0 = first modality of
`input_shapes`), with a default for all other positions.

This file defines the vocabularies, the dataclasses, strict (de)serialisation (`to_dict` /
`from_dict`) and `validate()`. It does not render code (`render.py`) or draw genomes
(`operators.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from autofusion.errors import AutoFusionError

ENCODER_KINDS = ("none", "linear", "mlp", "transformer")
POOLINGS = ("mean", "max", "attention", "cls")
VECTOR_FUSIONS = ("concat", "sum", "product", "gating", "lmf", "tfn", "late")
TOKEN_FUSIONS = ("film", "cross_attention", "joint_attention", "mult")
FUSIONS = VECTOR_FUSIONS + TOKEN_FUSIONS
# Fusions that run attention over a token sequence after the encoders: a CLS token makes sense there.
ATTENTION_FUSIONS = ("cross_attention", "joint_attention", "mult")
DIRECTIONS = ("query_attends", "others_attend")
NORMS = ("none", "layer")
POSITIONS = ("none", "learned", "sinusoidal")
ACTIVATIONS = ("gelu", "relu", "silu", "tanh")
HEAD_KINDS = ("linear", "mlp")
WIDTHS = (32, 48, 64, 96, 128, 192, 256)
N_HEADS = (1, 2, 4, 8)
DROPOUTS = (0.0, 0.05, 0.1, 0.2, 0.3)
TENSOR_BUDGETS = (256, 1024, 4096)
RANKS = (1, 2, 4, 8, 16)
MAX_POSITION = 7  # per-modality overrides and query indices address modalities 0..7

SCHEMA_VERSION = 1


def _fail(field_name: str, value: Any, fix: str) -> AutoFusionError:
    return AutoFusionError(f"genome field '{field_name}' = {value!r} is invalid: {fix}")


def _check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if isinstance(value, bool) and not any(isinstance(c, bool) for c in choices):
        raise _fail(name, value, f"use one of {list(choices)}")
    if value not in choices:
        raise _fail(name, value, f"use one of {list(choices)}")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _fail(name, value, f"use an integer in [{low}, {high}]")


@dataclass(frozen=True)
class Encoder:
    """How one modality's raw features become a token stream."""

    kind: str = "linear"  # none | linear (to width) | mlp (to width) | transformer (linear + self-attention)
    layers: int = 1  # mlp: hidden layers; transformer: self-attention layers (1-2)

    def validate(self, where: str) -> None:
        _check_choice(f"{where}.kind", self.kind, ENCODER_KINDS)
        _check_int(f"{where}.layers", self.layers, 1, 2)


@dataclass(frozen=True)
class Fusion:
    """The operator that combines the modalities, with its own genes (unused genes keep defaults)."""

    op: str = "concat"
    query: int = 0  # film: the modulated main stream; cross_attention: the query modality
    direction: str = "query_attends"  # cross_attention: query attends to others, or others to query
    depth: int = 1  # attention layers (cross_attention, joint_attention, mult)
    rank: int = 4  # lmf
    tensor_budget: int = 4096  # tfn: the outer product holds at most this many entries
    norm: str = "layer"  # LayerNorm after the fusion (or inside attention blocks)
    residual: bool = True  # film: x * (1 + gamma) + beta; cross_attention: x + attention(x)

    def validate(self) -> None:
        _check_choice("fusion.op", self.op, FUSIONS)
        _check_int("fusion.query", self.query, 0, MAX_POSITION)
        _check_choice("fusion.direction", self.direction, DIRECTIONS)
        _check_int("fusion.depth", self.depth, 1, 3)
        _check_choice("fusion.rank", self.rank, RANKS)
        _check_choice("fusion.tensor_budget", self.tensor_budget, TENSOR_BUDGETS)
        _check_choice("fusion.norm", self.norm, NORMS)
        if not isinstance(self.residual, bool):
            raise _fail("fusion.residual", self.residual, "use true or false")


@dataclass(frozen=True)
class Head:
    """The classifier that maps the fused vector to logits."""

    kind: str = "mlp"  # linear | mlp
    depth: int = 1  # mlp: hidden layers of `width` units (1-3)

    def validate(self) -> None:
        _check_choice("head.kind", self.kind, HEAD_KINDS)
        _check_int("head.depth", self.depth, 1, 3)


@dataclass(frozen=True)
class Genome:
    """A complete fusion architecture; `render(genome)` turns it into a candidate module."""

    width: int = 64
    heads: int = 4
    dropout: float = 0.1
    activation: str = "gelu"
    encoder: Encoder = field(default_factory=Encoder)
    encoder_overrides: tuple[tuple[int, Encoder], ...] = ()  # (modality position, encoder), sorted
    pool: str = "mean"
    positions: str = "none"  # position information added to token streams (attention fusions)
    fusion: Fusion = field(default_factory=Fusion)
    head: Head = field(default_factory=Head)

    def encoder_at(self, position: int) -> Encoder:
        """The encoder gene of the modality at `position` (the override, else the default)."""
        return dict(self.encoder_overrides).get(position, self.encoder)

    def encoder_kinds(self) -> set[str]:
        return {self.encoder.kind} | {e.kind for _, e in self.encoder_overrides}

    def validate(self) -> "Genome":
        """Raise AutoFusionError naming the first invalid field; return self when valid."""
        _check_choice("width", self.width, WIDTHS)
        _check_choice("heads", self.heads, N_HEADS)
        _check_choice("dropout", self.dropout, DROPOUTS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("pool", self.pool, POOLINGS)
        _check_choice("positions", self.positions, POSITIONS)
        self.encoder.validate("encoder")
        seen: list[int] = []
        for item in self.encoder_overrides:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Encoder)):
                raise _fail("encoder_overrides", item, "use (position, Encoder) pairs")
            _check_int("encoder_overrides.position", item[0], 0, MAX_POSITION)
            item[1].validate(f"encoder_overrides[{item[0]}]")
            seen.append(item[0])
        if seen != sorted(set(seen)):
            raise _fail("encoder_overrides", seen, "list each position once, in increasing order")
        self.fusion.validate()
        self.head.validate()
        if self.width % self.heads:
            raise _fail("heads", self.heads, f"use a divisor of width {self.width}")
        if self.pool == "cls" and self.fusion.op not in ATTENTION_FUSIONS:
            raise _fail("pool", "cls", f"a CLS token needs an attention fusion {list(ATTENTION_FUSIONS)}; "
                        "use mean, max or attention pooling")
        if self.pool == "cls" and self.fusion.op == "cross_attention" and self.fusion.direction != "query_attends":
            raise _fail("pool", "cls", "with cross_attention a CLS token needs direction 'query_attends' "
                        "(the CLS token is a query); use mean, max or attention pooling")
        self._check_size()
        return self

    def _check_size(self) -> None:
        """Keep ScienceQA-size inputs (2 x [100-64 tokens, 256-768 features]) under a few million
        parameters: the widest settings are only allowed on shallow structures."""
        if self.width <= 128:
            return
        if self.fusion.op == "mult":
            raise _fail("width", self.width, "mult fusion allows width <= 128 (its streams are "
                        "width x (modalities - 1) wide); lower the width")
        deep_encoder = any(e.kind == "transformer" and e.layers > 1 for e in
                           (self.encoder, *(e for _, e in self.encoder_overrides)))
        deep_fusion = self.fusion.op in ATTENTION_FUSIONS and self.fusion.depth > 1
        if deep_encoder or deep_fusion or self.head.depth > 2:
            raise _fail("width", self.width, "widths above 128 allow one self-attention layer per "
                        "encoder, fusion depth 1 and head depth <= 2; lower the width or the depth")
        if self.fusion.op == "lmf" and self.fusion.rank > 4:
            raise _fail("fusion.rank", self.fusion.rank, "widths above 128 allow lmf rank <= 4")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; `Genome.from_dict(g.to_dict()) == g`."""
        return {
            "version": SCHEMA_VERSION,
            "width": self.width,
            "heads": self.heads,
            "dropout": self.dropout,
            "activation": self.activation,
            "encoder": _plain(self.encoder),
            "encoder_overrides": {str(p): _plain(e) for p, e in self.encoder_overrides},
            "pool": self.pool,
            "positions": self.positions,
            "fusion": _plain(self.fusion),
            "head": _plain(self.head),
        }

    @classmethod
    def from_dict(cls, data: Any) -> "Genome":
        """Parse and validate; unknown keys, missing nesting or bad values raise AutoFusionError."""
        if not isinstance(data, dict):
            raise _fail("genome", type(data).__name__, "pass a dict as written by Genome.to_dict()")
        data = dict(data)
        version = data.pop("version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise _fail("version", version, f"this synthesizer reads version {SCHEMA_VERSION}")
        _reject_unknown("", data, {f.name for f in fields(cls)})
        kwargs: dict[str, Any] = {k: v for k, v in data.items()
                                  if k not in ("encoder", "encoder_overrides", "fusion", "head")}
        if "dropout" in kwargs and isinstance(kwargs["dropout"], int) and not isinstance(kwargs["dropout"], bool):
            kwargs["dropout"] = float(kwargs["dropout"])
        if "encoder" in data:
            kwargs["encoder"] = _parse(Encoder, "encoder", data["encoder"])
        if "fusion" in data:
            kwargs["fusion"] = _parse(Fusion, "fusion", data["fusion"])
        if "head" in data:
            kwargs["head"] = _parse(Head, "head", data["head"])
        if "encoder_overrides" in data:
            kwargs["encoder_overrides"] = _parse_overrides(data["encoder_overrides"])
        return cls(**kwargs).validate()

    def with_overrides(self, overrides: dict[int, Encoder]) -> "Genome":
        """A copy whose overrides are `overrides` minus entries equal to the default encoder."""
        kept = tuple(sorted((p, e) for p, e in overrides.items() if e != self.encoder))
        return replace(self, encoder_overrides=kept)


def _plain(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _reject_unknown(where: str, data: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise _fail(name, data[unknown[0]], f"unknown key; known keys are {sorted(known)}")


def _parse(cls: type, where: str, data: Any) -> Any:
    if not isinstance(data, dict):
        raise _fail(where, data, f"use a dict with keys {[f.name for f in fields(cls)]}")
    _reject_unknown(where, data, {f.name for f in fields(cls)})
    return cls(**data)


def _parse_overrides(data: Any) -> tuple[tuple[int, Encoder], ...]:
    if not isinstance(data, dict):
        raise _fail("encoder_overrides", data, "use a dict {\"<position>\": {encoder}}")
    items: list[tuple[int, Encoder]] = []
    for key, value in data.items():
        try:
            position = int(key)
        except (TypeError, ValueError):
            raise _fail("encoder_overrides", key, "keys are modality positions such as \"0\"") from None
        items.append((position, _parse(Encoder, f"encoder_overrides[{key}]", value)))
    return tuple(sorted(items, key=lambda item: item[0]))
