"""Rendering of the fusion operators: one function per `Fusion.op`, writing into a `Source`.

Every function starts after the encoders (the forward has `streams` [B, L_m, dims[m]] and `masks`
[B, L_m]; __init__ has `shapes` and `dims`) and ends with `fused_dim` defined in __init__ and
`fused` [B, fused_dim] in forward, except `late`, which returns the logits itself. Only the code
paths of the genome at hand are written. Encoders, head and file layout live in `render.py`.
"""

from __future__ import annotations

from typing import Callable

from autofusion.generators.synth import snippets
from autofusion.generators.synth.builder import Source


def pool_expr(src: Source, x: str, mask: str, module: str = "") -> str:
    """The expression that pools tokens `x` under `mask` to one vector (mask honoured)."""
    kind = src.genome.pool
    if kind == "mean":
        src.need(snippets.MASKED_MEAN)
        return f"masked_mean({x}, {mask})"
    if kind == "max":
        src.need(snippets.MASKED_MAX)
        return f"masked_max({x}, {mask})"
    if kind == "attention":
        src.need(snippets.ATTENTION_POOL)
        return f"{module}({x}, {mask})"
    return f"{x}[:, 0]"  # cls: the learned token prepended before attention


def _pool_each(src: Source) -> None:
    """pooled = one vector per modality."""
    if src.genome.pool == "attention":
        src.init.append("self.pools = nn.ModuleList(AttentionPool(d) for d in dims)")
        expr = pool_expr(src, "x", "mask", "pool")
        src.forward.append(f"pooled = [{expr} for pool, x, mask in zip(self.pools, streams, masks)]")
    else:
        expr = pool_expr(src, "x", "mask")
        src.forward.append(f"pooled = [{expr} for x, mask in zip(streams, masks)]")


def _align(src: Source) -> None:
    """Bring every stream to WIDTH (only written when some encoder keeps the raw width)."""
    if "none" not in src.genome.encoder_kinds():
        return
    src.init += [
        "self.align = nn.ModuleList(nn.Linear(d, WIDTH) if d != WIDTH else nn.Identity() for d in dims)",
        "dims = [WIDTH] * len(dims)",
    ]
    src.forward.append("streams = [align(x) for align, x in zip(self.align, streams)]")


def _positions(src: Source) -> None:
    kind = src.genome.positions
    if kind == "learned":
        src.init += [
            "self.positions = nn.ParameterList(",
            "    nn.Parameter(0.02 * torch.randn(shape[0] if len(shape) == 2 else 1, WIDTH)) for shape in shapes",
            ")",
        ]
        src.forward.append("streams = [x + pos[: x.shape[1]] for x, pos in zip(streams, self.positions)]")
    elif kind == "sinusoidal":
        src.need(snippets.SINUSOID)
        src.forward.append("streams = [x + sinusoid(x.shape[1], WIDTH, x.device) for x in streams]")


def _index(src: Source, attr: str) -> None:
    query = src.genome.fusion.query
    if query == 0:
        src.init.append(f"self.{attr} = 0")
    else:
        src.const("QUERY", query)
        src.init.append(f"self.{attr} = QUERY % len(shapes)  # wraps around for tasks with fewer modalities")


def concat(src: Source) -> None:
    _pool_each(src)
    src.init.append("fused_dim = sum(dims)")
    src.forward.append("fused = torch.cat(pooled, dim=-1)")


def _sum_or_product(src: Source, reduce: str) -> None:
    _pool_each(src)
    if "none" in src.genome.encoder_kinds():
        src.init.append("self.align = nn.ModuleList(nn.Linear(d, WIDTH) if d != WIDTH else nn.Identity() for d in dims)")
        src.forward.append("pooled = [align(p) for align, p in zip(self.align, pooled)]")
    src.init.append("fused_dim = WIDTH")
    src.forward.append(f"fused = torch.stack(pooled, dim=0).{reduce}(dim=0)")


def sum_(src: Source) -> None:
    _sum_or_product(src, "sum")


def product(src: Source) -> None:
    _sum_or_product(src, "prod")


def gating(src: Source) -> None:
    _pool_each(src)
    src.init += [
        "self.hidden = nn.ModuleList(nn.Linear(d, WIDTH) for d in dims)",
        "self.gate = nn.Linear(sum(dims), len(dims) * WIDTH)  # per unit, softmax over modalities",
        "fused_dim = WIDTH",
    ]
    src.forward += [
        "h = torch.stack([torch.tanh(layer(p)) for layer, p in zip(self.hidden, pooled)], dim=1)",
        "z = self.gate(torch.cat(pooled, dim=-1)).view(-1, len(pooled), WIDTH).softmax(dim=1)",
        "fused = (z * h).sum(dim=1)",
    ]


def lmf(src: Source) -> None:
    src.const("RANK", src.genome.fusion.rank)
    _pool_each(src)
    src.init += [
        "# Modality-specific low-rank factors over [pooled, 1] (Liu et al. 2018).",
        "self.factors = nn.ParameterList(",
        "    nn.Parameter(torch.randn(RANK, d + 1, WIDTH) / math.sqrt(d + 1)) for d in dims",
        ")",
        "self.rank_weights = nn.Parameter(torch.full((RANK,), 1.0 / RANK))",
        "self.bias = nn.Parameter(torch.zeros(WIDTH))",
        "fused_dim = WIDTH",
    ]
    src.forward += [
        "product = None",
        "for p, factor in zip(pooled, self.factors):",
        "    p = torch.cat([p, torch.ones_like(p[:, :1])], dim=-1)",
        '    term = torch.einsum("bd,rdh->brh", p, factor)  # [B, RANK, WIDTH]',
        "    product = term if product is None else product * term",
        'fused = torch.einsum("brh,r->bh", product, self.rank_weights) + self.bias',
    ]


def tfn(src: Source) -> None:
    src.const("FUSED_MAX", src.genome.fusion.tensor_budget)
    src.need(snippets.TFN_FACTOR_DIM)
    _pool_each(src)
    src.init += [
        "d = factor_dim(len(dims))",
        "self.embed = nn.ModuleList(nn.Linear(dim, d) for dim in dims)",
        "fused_dim = (d + 1) ** len(dims)",
    ]
    src.forward += [
        "fused = None",
        "for p, embed in zip(pooled, self.embed):",
        "    z = embed(p)",
        "    z = torch.cat([z, torch.ones_like(z[:, :1])], dim=-1)",
        "    # Outer product with what has been fused so far, flattened: [B, prod(d + 1)].",
        "    fused = z if fused is None else (fused.unsqueeze(2) * z.unsqueeze(1)).flatten(1)",
    ]


def late(src: Source) -> None:
    _pool_each(src)
    src.init.append(f"self.heads = nn.ModuleList({head_expr(src, 'd')} for d in dims)")
    src.forward += [
        "logits = [head(p) for head, p in zip(self.heads, pooled)]",
        "return torch.stack(logits, dim=0).mean(dim=0)",
    ]


def film(src: Source) -> None:
    g = src.genome
    _index(src, "main")
    src.init += [
        "conditions = [d for i, d in enumerate(dims) if i != self.main]",
        "self.film = nn.ModuleList(nn.Linear(d, 2 * dims[self.main]) for d in conditions)",
        "fused_dim = dims[self.main]",
    ]
    attention = g.pool == "attention"
    if attention:
        src.init += [
            "self.condition_pools = nn.ModuleList(AttentionPool(d) for d in conditions)",
            "self.pool = AttentionPool(fused_dim)",
        ]
    if g.fusion.norm == "layer":
        src.init.append("self.norm = nn.LayerNorm(fused_dim)")
    modulate = "(1 + gamma) * h + beta" if g.fusion.residual else "gamma * h + beta"
    src.forward += [
        "h, mask = streams[self.main], masks[self.main]",
        "others = [i for i in range(len(streams)) if i != self.main]",
    ]
    if attention:
        src.forward.append("for film, pool, i in zip(self.film, self.condition_pools, others):")
        condition = pool_expr(src, "streams[i]", "masks[i]", "pool")
    else:
        src.forward.append("for film, i in zip(self.film, others):")
        condition = pool_expr(src, "streams[i]", "masks[i]")
    src.forward += [
        f"    gamma, beta = film({condition}).unsqueeze(1).chunk(2, dim=-1)",
        f"    h = {modulate}",
    ]
    h = f"{src.act_function()}(h)"
    if g.fusion.norm == "layer":
        h = f"self.norm({h})"
    src.forward.append(f"fused = {pool_expr(src, h, 'mask', 'self.pool')}")


def cross_attention(src: Source) -> None:
    g = src.genome
    src.const("HEADS", g.heads)
    src.need(snippets.KEY_PADDING)
    _cross_attention_class(src)
    _align(src)
    _positions(src)
    _index(src, "query")
    layer = "CrossAttention()" if g.fusion.depth == 1 else \
        "nn.ModuleList(CrossAttention() for _ in range(DEPTH))"
    if g.fusion.depth > 1:
        src.const("DEPTH", g.fusion.depth)
    src.init += [
        f"self.cross = nn.ModuleList({layer} for _ in range(len(shapes) - 1))",
        "fused_dim = len(shapes) * WIDTH",
    ]
    if g.pool == "attention":
        src.init.append("self.pools = nn.ModuleList(AttentionPool(WIDTH) for _ in shapes)")
    if g.pool == "cls":
        src.need(snippets.PREPEND_CLS)
        src.init.append("self.cls = nn.Parameter(0.02 * torch.randn(WIDTH))")
    src.forward += [
        "q, q_mask = streams[self.query], masks[self.query]",
        "sources = [i for i in range(len(streams)) if i != self.query]",
    ]
    if g.pool == "cls":
        src.forward.append("q, q_mask = prepend_cls(self.cls, q, q_mask)")
    src.forward.append(f"pooled = [{pool_expr(src, 'q', 'q_mask', 'self.pools[0]')}]")
    if g.fusion.direction == "query_attends":
        args, out_mask = "q, streams[i], masks[i]", "q_mask"
    else:
        args, out_mask = "streams[i], q, q_mask", "masks[i]"
    src.forward.append("for j, (cross, i) in enumerate(zip(self.cross, sources)):")
    first = args.split(", ")[0]
    if g.fusion.depth == 1:
        src.forward.append(f"    attended = cross({args})")
    else:
        src.forward += [f"    attended = {first}", "    for layer in cross:",
                        f"        attended = layer(attended, {args.split(', ', 1)[1]})"]
    src.forward += [
        f"    pooled.append({pool_expr(src, 'attended', out_mask, 'self.pools[j + 1]')})",
        "fused = torch.cat(pooled, dim=-1)",
    ]


def _cross_attention_class(src: Source) -> None:
    fusion = src.genome.fusion
    layer_norm = fusion.norm == "layer"
    combine = "query + out" if fusion.residual else "out"
    if layer_norm:
        combine = f"self.norm({combine})"
    doc = {(True, True): " Residual, then LayerNorm.", (True, False): " Residual connection.",
           (False, True): " LayerNorm on the output.", (False, False): ""}[(fusion.residual, layer_norm)]
    src.need(snippets.CROSS_ATTENTION.format(
        doc=doc, combine=combine, norm_init="\n        self.norm = nn.LayerNorm(WIDTH)" if layer_norm else ""))


def joint_attention(src: Source) -> None:
    g = src.genome
    src.need(snippets.KEY_PADDING)
    src.need(src.transformer_layer())
    _align(src)
    _positions(src)
    if g.fusion.depth > 1:
        src.const("DEPTH", g.fusion.depth)
    depth = "DEPTH" if g.fusion.depth > 1 else "1"
    norm = "nn.LayerNorm(WIDTH)" if g.fusion.norm == "layer" else "None"
    src.init += [
        "self.modality = nn.Parameter(0.02 * torch.randn(len(shapes), WIDTH))",
        "self.drop = nn.Dropout(DROPOUT)",
        f"self.encoder = nn.TransformerEncoder(transformer_layer(WIDTH), {depth}, norm={norm}, enable_nested_tensor=False)",
        "fused_dim = WIDTH",
    ]
    if g.pool == "cls":
        src.need(snippets.PREPEND_CLS)
        src.init.append("self.cls = nn.Parameter(0.02 * torch.randn(WIDTH))")
    if g.pool == "attention":
        src.init.append("self.pool = AttentionPool(WIDTH)")
    src.forward += [
        "seq = torch.cat([x + self.modality[i] for i, x in enumerate(streams)], dim=1)",
        "mask = torch.cat(masks, dim=1)",
    ]
    if g.pool == "cls":
        src.forward.append("seq, mask = prepend_cls(self.cls, seq, mask)")
    src.forward += [
        "out = self.encoder(self.drop(seq), src_key_padding_mask=key_padding(mask))",
        f"fused = {pool_expr(src, 'out', 'mask', 'self.pool')}",
    ]


def mult(src: Source) -> None:
    g = src.genome
    src.need(snippets.KEY_PADDING)
    src.need(src.transformer_layer())
    src.need(snippets.CROSS_MODAL_BLOCK.format(act=src.act_module()))
    _align(src)
    _positions(src)
    block = "CrossModalBlock()" if g.fusion.depth == 1 else \
        "nn.ModuleList(CrossModalBlock() for _ in range(DEPTH))"
    if g.fusion.depth > 1:
        src.const("DEPTH", g.fusion.depth)
    src.init += [
        "n = len(shapes)",
        "stream_width = WIDTH * max(n - 1, 1)  # the cross-modal streams into a target, concatenated",
        "# cross[t][j]: from the j-th source (all modalities but t, in order) into target t.",
        f"self.cross = nn.ModuleList(nn.ModuleList({block} for _ in range(n - 1)) for _ in range(n))",
        "self.self_attn = nn.ModuleList(transformer_layer(stream_width) for _ in range(n))",
    ]
    if g.fusion.norm == "layer":
        src.init.append("self.norms = nn.ModuleList(nn.LayerNorm(stream_width) for _ in range(n))")
    if g.pool == "cls":
        src.need(snippets.PREPEND_CLS)
        src.init.append("self.cls = nn.Parameter(0.02 * torch.randn(n, WIDTH))")
    if g.pool == "attention":
        src.init.append("self.pools = nn.ModuleList(AttentionPool(stream_width) for _ in range(n))")
    src.init.append("fused_dim = n * stream_width")
    src.forward += ["pooled = []", "for t in range(len(streams)):",
                    "    target, target_mask = streams[t], masks[t]"]
    if g.pool == "cls":
        src.forward.append("    target, target_mask = prepend_cls(self.cls[t], target, target_mask)")
    src.forward += [
        "    sources = [s for s in range(len(streams)) if s != t]",
        "    crossed = []",
        "    for block, s in zip(self.cross[t], sources):",
    ]
    if g.fusion.depth == 1:
        src.forward.append("        crossed.append(block(target, streams[s], masks[s]))")
    else:
        src.forward += ["        x = target", "        for layer in block:",
                        "            x = layer(x, streams[s], masks[s])", "        crossed.append(x)"]
    h = "self.norms[t](h)" if g.fusion.norm == "layer" else "h"
    src.forward += [
        "    h = torch.cat(crossed, dim=-1) if crossed else target",
        "    h = self.self_attn[t](h, src_key_padding_mask=key_padding(target_mask))",
        f"    pooled.append({pool_expr(src, h, 'target_mask', 'self.pools[t]')})",
        "fused = torch.cat(pooled, dim=-1)",
    ]


def head_expr(src: Source, in_dim: str) -> str:
    """The classifier from `in_dim` features to `num_classes` logits."""
    head = src.genome.head
    if head.kind == "linear":
        return f"nn.Linear({in_dim}, num_classes)"
    return f"make_head({in_dim}, num_classes)"


RENDERERS: dict[str, Callable[[Source], None]] = {
    "concat": concat,
    "sum": sum_,
    "product": product,
    "gating": gating,
    "lmf": lmf,
    "tfn": tfn,
    "late": late,
    "film": film,
    "cross_attention": cross_attention,
    "joint_attention": joint_attention,
    "mult": mult,
}
