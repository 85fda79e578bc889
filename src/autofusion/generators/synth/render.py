"""Render a genome as readable candidate source (DESIGN §2): `render(genome) -> str`.

The output defines `FusionModel(input_shapes, num_classes)`, imports only torch, torch.nn,
torch.nn.functional and math, reads `input_shapes` at init (any number of vector or token
modalities) and honours `<modality>_mask` wherever tokens are pooled or attended. Only the code
paths the genome uses are written, and the same genome always gives the same text. This file lays
out the encoders, the head and the docstring; each fusion operator is written by `fusions.py`.
"""

from __future__ import annotations

import textwrap

from autofusion.generators.synth import snippets
from autofusion.generators.synth.builder import Source
from autofusion.generators.synth.fusions import RENDERERS, head_expr
from autofusion.generators.synth.genome import Encoder, Genome

FUSION_TEXT = {
    "concat": "pooled features concatenated",
    "sum": "pooled features projected to a common width and summed",
    "product": "pooled features projected to a common width and multiplied elementwise",
    "gating": "gated multimodal unit: tanh branches mixed by per-unit softmax gates (Arevalo et al. 2017)",
    "lmf": "low-rank multimodal fusion with rank-{rank} modality factors (Liu et al. 2018)",
    "tfn": "tensor fusion: outer product of [z_m, 1] with at most {tensor_budget} entries (Zadeh et al. 2017)",
    "late": "late fusion: one classifier per modality, logits averaged",
    "film": "FiLM: modality {query} modulated by gamma/beta from the others (Perez et al. 2018)",
    "cross_attention": "cross-attention ({direction}, query modality {query}, {depth} layer(s))",
    "joint_attention": "early fusion: a {depth}-layer transformer over the tokens of all modalities",
    "mult": "MulT-style cross-modal blocks per target ({depth} per pair) and self-attention (Tsai et al. 2019)",
}
ENCODER_TEXT = {"none": "raw features", "linear": "linear projection", "mlp": "{layers}-hidden-layer MLP",
                "transformer": "projection + {layers} self-attention layer(s)"}


def render(genome: Genome) -> str:
    """The candidate source of `genome` (validated first; AutoFusionError when invalid)."""
    genome.validate()
    src = Source(genome)
    src.const("WIDTH", genome.width)
    src.const("DROPOUT", genome.dropout)
    src.need(snippets.AS_TOKENS)
    _encoders(src)
    if genome.head.kind == "mlp":
        src.need(_make_head(src))
    src.init.append("")
    src.forward.append("")
    RENDERERS[genome.fusion.op](src)
    if genome.fusion.op != "late":
        _tail(src)
    return src.text(describe(genome))


def describe(genome: Genome) -> str:
    """A short human description of the architecture (the rendered docstring)."""
    f = genome.fusion
    fusion = FUSION_TEXT[f.op].format(rank=f.rank, tensor_budget=f.tensor_budget, query=f.query,
                                      direction=f.direction.replace("_", " "), depth=f.depth)
    encoders = _encoder_text(genome.encoder)
    if genome.encoder_overrides:
        special = ", ".join(f"modality {p}: {_encoder_text(e)}" for p, e in genome.encoder_overrides)
        encoders = f"{special}; others: {encoders}"
    head = "linear classifier" if genome.head.kind == "linear" else \
        f"MLP classifier ({genome.head.depth} hidden layer(s))"
    summary = textwrap.fill(f"Synthesized fusion module: {fusion}.", 96)
    details = textwrap.fill(
        f"Encoders: {encoders}. Pooling: {genome.pool}. Width {genome.width}, dropout "
        f"{genome.dropout}, {genome.activation} activations, {head}. Generic over any number of vector "
        "[D] or token [L, D] modalities; `<name>_mask` (True = real token) is honoured wherever tokens "
        "are pooled or attended. Written by the AutoFusion program synthesizer; standalone, imports "
        "only torch and math.", 96)
    return f"{summary}\n\n{details}"


def _encoder_text(encoder: Encoder) -> str:
    return ENCODER_TEXT[encoder.kind].format(layers=encoder.layers)


def _encoders(src: Source) -> None:
    g = src.genome
    kinds = g.encoder_kinds()
    src.init += ["self.names = list(input_shapes)",
                 "shapes = [tuple(int(s) for s in shape) for shape in input_shapes.values()]"]
    src.forward.append("streams, masks = [], []")
    if kinds == {"none"}:
        src.init.append("dims = [shape[-1] for shape in shapes]")
        src.forward += ["for name in self.names:",
                        '    x, mask = as_tokens(inputs[name], inputs.get(name + "_mask"))',
                        "    streams.append(x)", "    masks.append(mask)"]
        return
    with_mask = "transformer" in kinds
    if with_mask:
        src.need(snippets.MODALITY_ENCODER)
    if not g.encoder_overrides:
        src.need(_make_encoder_uniform(src, with_mask))
        src.init += ["self.encoders = nn.ModuleList(make_encoder(shape[-1]) for shape in shapes)",
                     "dims = [WIDTH] * len(shapes)"]
    else:
        src.need(_make_encoder_by_position(src, with_mask))
        src.init += ["self.encoders = nn.ModuleList()", "dims = []",
                     "for position, shape in enumerate(shapes):",
                     "    encoder, dim = make_encoder(position, shape[-1])",
                     "    self.encoders.append(encoder)", "    dims.append(dim)"]
    call = "encoder(x, mask)" if with_mask else "encoder(x)"
    src.forward += ["for name, encoder in zip(self.names, self.encoders):",
                    '    x, mask = as_tokens(inputs[name], inputs.get(name + "_mask"))',
                    f"    streams.append({call})", "    masks.append(mask)"]


def _encoder_expr(src: Source, encoder: Encoder, with_mask: bool, indent: str) -> str:
    act = src.act_module()
    if encoder.kind == "none":
        expr = "nn.Identity()"
    elif encoder.kind in ("linear", "transformer"):
        expr = "nn.Linear(dim, WIDTH)"
    else:
        hidden = "".join(f"{indent}    nn.Linear(WIDTH, WIDTH), {act}, nn.Dropout(DROPOUT),\n"
                         for _ in range(encoder.layers - 1))
        expr = (f"nn.Sequential(\n{indent}    nn.Linear(dim, WIDTH), {act}, nn.Dropout(DROPOUT),\n"
                f"{hidden}{indent}    nn.Linear(WIDTH, WIDTH),\n{indent})")
    if with_mask:
        expr = f"ModalityEncoder({expr}, {encoder.layers if encoder.kind == 'transformer' else 0})"
    return expr


def _make_encoder_uniform(src: Source, with_mask: bool) -> str:
    encoder = src.genome.encoder
    return (f"\ndef make_encoder(dim: int) -> nn.Module:\n"
            f'    """Every modality: {_encoder_text(encoder)} to WIDTH, token-wise."""\n'
            f"    return {_encoder_expr(src, encoder, with_mask, '    ')}\n")


def _make_encoder_by_position(src: Source, with_mask: bool) -> str:
    g = src.genome
    lines = ["", "def make_encoder(position: int, dim: int) -> tuple[nn.Module, int]:",
             '    """The encoder of the modality at `position` and the width of its output."""']
    for position, encoder in g.encoder_overrides:
        width = "dim" if encoder.kind == "none" else "WIDTH"
        lines += [f"    if position == {position}:  # {_encoder_text(encoder)}",
                  f"        return {_encoder_expr(src, encoder, with_mask, '        ')}, {width}"]
    width = "dim" if g.encoder.kind == "none" else "WIDTH"
    lines.append(f"    return {_encoder_expr(src, g.encoder, with_mask, '    ')}, {width}"
                 f"  # {_encoder_text(g.encoder)}")
    return "\n".join(lines) + "\n"


def _make_head(src: Source) -> str:
    act = src.act_module()
    hidden = "".join(f"        nn.Linear(WIDTH, WIDTH), {act}, nn.Dropout(DROPOUT),\n"
                     for _ in range(src.genome.head.depth - 1))
    return ("\ndef make_head(in_dim: int, num_classes: int) -> nn.Module:\n"
            f'    """MLP classifier with {src.genome.head.depth} hidden layer(s) of WIDTH units."""\n'
            "    return nn.Sequential(\n"
            f"        nn.Linear(in_dim, WIDTH), {act}, nn.Dropout(DROPOUT),\n"
            f"{hidden}"
            "        nn.Linear(WIDTH, num_classes),\n"
            "    )\n")


def _tail(src: Source) -> None:
    g = src.genome
    # Token fusions apply their norm inside; vector fusions normalise the fused vector here.
    norm_here = g.fusion.norm == "layer" and g.fusion.op in ("concat", "sum", "product", "gating", "lmf", "tfn")
    if norm_here:
        src.init.append("self.norm = nn.LayerNorm(fused_dim)")
    src.init.append(f"self.head = {head_expr(src, 'fused_dim')}")
    src.forward.append("return self.head(self.norm(fused))" if norm_here else "return self.head(fused)")
