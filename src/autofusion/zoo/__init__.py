"""The hand-designed fusion zoo: nine reference fusion modules shipped as standalone candidates.

Each member is a file ``<name>.py`` in this package that satisfies the candidate contract (DESIGN
§2): it defines ``FusionModel(input_shapes, num_classes)`` and imports only torch and math, so it
can be gated, sandboxed, trained and exported exactly like a generated candidate. This module only
locates and reads those files; it never imports or runs them (the sandbox does that). The members
are the baselines a search must beat and the seeds the synthesizer mirrors as genomes.
"""

from __future__ import annotations

from pathlib import Path

from autofusion.errors import AutoFusionError

ZOO_NAMES: tuple[str, ...] = (
    "concat",
    "late",
    "tfn",
    "lmf",
    "gmu",
    "film",
    "cross_attention",
    "early_transformer",
    "mult",
)

ZOO_DESCRIPTIONS: dict[str, str] = {
    "concat": "pooled features of all modalities concatenated, one-hidden-layer MLP",
    "late": "one MLP classifier per modality, logits averaged (no cross-modal interaction)",
    "tfn": "Tensor Fusion Network (Zadeh et al. 2017): outer product of [z_m, 1], MLP head",
    "lmf": "Low-rank Multimodal Fusion (Liu et al. 2018): rank-4 factors, product, MLP head",
    "gmu": "Gated Multimodal Unit (Arevalo et al. 2017): tanh branches mixed by softmax gates",
    "film": "FiLM (Perez et al. 2018): first modality modulated by gamma/beta from the others",
    "cross_attention": "first modality attends to each other modality, residual + LayerNorm",
    "early_transformer": "all tokens + modality/position embeddings + CLS, 2-layer transformer",
    "mult": "MulT (Tsai et al. 2019): cross-modal transformer blocks per target, self-attention",
}

_ZOO_DIR = Path(__file__).resolve().parent


def zoo_path(name: str) -> Path:
    """The shipped candidate file of zoo member ``name``."""
    if name not in ZOO_NAMES:
        raise AutoFusionError(
            f"unknown zoo member {name!r}; valid names are: {', '.join(ZOO_NAMES)}"
        )
    path = _ZOO_DIR / f"{name}.py"
    if not path.is_file():
        raise AutoFusionError(
            f"zoo member {name!r} is missing its file {path}; reinstall autofusion "
            "(the package data 'zoo/*.py' was not shipped)"
        )
    return path


def zoo_source(name: str) -> str:
    """The source code of zoo member ``name``, as a candidate string."""
    return zoo_path(name).read_text(encoding="utf-8")
