"""Genomes that reproduce the hand-designed fusion zoo (`src/autofusion/zoo/<name>.py`).

Each preset renders to a module with exactly the zoo member's parameter count on any input shapes
(tested in tests/generators/test_synth_presets.py), so a search can start from the zoo, reach it
again and recombine its members. The zoo files stay the reference baselines; these genomes are only
their editable twins. This file does not read or import the zoo.
"""

from __future__ import annotations

from autofusion.generators.synth.genome import Encoder, Fusion, Genome, Head

_RAW = Encoder("none")
_LINEAR = Encoder("linear")
_HEAD = Head("mlp", 1)  # Linear(F, 64) -> GELU -> Dropout -> Linear(64, C), as in every zoo member

ZOO_PRESETS: dict[str, Genome] = {
    "concat": Genome(encoder=_RAW, fusion=Fusion("concat", norm="none"), head=_HEAD),
    "late": Genome(encoder=_RAW, fusion=Fusion("late", norm="none"), head=_HEAD),
    "tfn": Genome(encoder=_RAW, fusion=Fusion("tfn", tensor_budget=4096, norm="none"), head=_HEAD),
    "lmf": Genome(encoder=_RAW, fusion=Fusion("lmf", rank=4, norm="none"), head=_HEAD),
    "gmu": Genome(encoder=_RAW, fusion=Fusion("gating", norm="none"), head=_HEAD),
    "film": Genome(
        encoder=_RAW,
        encoder_overrides=((0, _LINEAR),),
        fusion=Fusion("film", query=0, residual=True, norm="none"),
        head=_HEAD,
    ),
    "cross_attention": Genome(
        encoder=_LINEAR,
        fusion=Fusion("cross_attention", query=0, direction="query_attends", depth=1, norm="layer"),
        head=_HEAD,
    ),
    "early_transformer": Genome(
        encoder=_LINEAR,
        pool="cls",
        positions="learned",
        fusion=Fusion("joint_attention", depth=2, norm="layer"),
        head=_HEAD,
    ),
    "mult": Genome(
        encoder=_LINEAR,
        positions="sinusoidal",
        fusion=Fusion("mult", depth=1, norm="layer"),
        head=_HEAD,
    ),
}

for _genome in ZOO_PRESETS.values():
    _genome.validate()
