"""MulT: Multimodal Transformer (Tsai et al., "Multimodal Transformer for Unaligned Multimodal
Language Sequences", ACL 2019).

For every target modality t and every other (source) modality s, a cross-modal transformer block
lets the target's tokens attend to the source's tokens (query = target, keys/values = source, pre-
LayerNorm, residual, position-wise feed-forward). The cross-modal streams into the same target are
concatenated along the feature axis, passed through a self-attention transformer layer, pooled, and
the pooled vectors of all targets are concatenated and classified.

Generalisation: the paper has three modalities (hence two sources per target); here any number M in
the order of ``input_shapes``, each of the M targets receiving M - 1 cross-modal blocks, so the
target stream has width HIDDEN * (M - 1). With a single modality there is no source: its stream is
its own projected tokens (width HIDDEN). Each modality is projected to HIDDEN by a Linear (the
paper's kernel-1 temporal convolution) and receives fixed sinusoidal positions, as in the paper. A
vector modality is one token. Masks (``<name>_mask`` True = real token; no mask = all real) are the
attention's key padding masks and the pooling is a masked mean over the target's real tokens (the
paper reads the last time step, which is ill-defined for padded, unaligned sequences). A sample
whose source is all padding gets a zero attention output instead of NaN.

Layers: per modality Linear(D_m, HIDDEN); per (target, source) CrossModalBlock(HIDDEN): LayerNorm
(query), LayerNorm (key/value), nn.MultiheadAttention(HIDDEN, 4 heads, dropout 0.1, batch_first),
LayerNorm, feed-forward Linear(HIDDEN, 4 * HIDDEN) -> GELU -> Dropout -> Linear(4 * HIDDEN, HIDDEN);
per target nn.TransformerEncoderLayer(W, 4 heads, dim_feedforward 4 * W, dropout 0.1, GELU,
batch_first, norm_first) and LayerNorm(W) with W = HIDDEN * max(M - 1, 1); head
Linear(M * W, HIDDEN) -> GELU -> Dropout -> Linear(HIDDEN, num_classes).
Does not: stack several cross-modal layers per pair (one each, to keep the proxy budget small).
Standalone candidate file: imports only torch and math.
"""

import math

import torch
import torch.nn as nn

HIDDEN = 64
DROPOUT = 0.1
N_HEADS = 4


def _as_tokens(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A vector [B, D] becomes one real token [B, 1, D]; no mask means every token is real."""
    if x.dim() == 2:
        x, mask = x.unsqueeze(1), None
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return x, mask.to(torch.bool)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens. Padding is replaced (not multiplied) by zero so no value leaks."""
    keep = mask.unsqueeze(-1)
    total = torch.where(keep, x, torch.zeros_like(x)).sum(dim=1)
    return total / keep.sum(dim=1).clamp(min=1).to(x.dtype)


def _sinusoid(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Fixed sinusoidal positions [length, dim] (Vaswani et al. 2017)."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    rate = torch.exp(torch.arange(0, dim, 2, device=device).float() * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)
    return table


class CrossModalBlock(nn.Module):
    """One MulT cross-modal layer: the target's tokens attend to the source's tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, N_HEADS, dropout=DROPOUT, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(DROPOUT), nn.Linear(4 * dim, dim)
        )
        self.drop = nn.Dropout(DROPOUT)

    def forward(
        self, target: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor
    ) -> torch.Tensor:
        # A sample whose source is all padding would make the softmax NaN: its keys are left
        # unmasked for the computation and its attention output replaced by zeros.
        has_key = source_mask.any(dim=1)
        ignore = ~source_mask & has_key.unsqueeze(1)
        kv = self.norm_kv(source)
        out, _ = self.attn(self.norm_q(target), kv, kv, key_padding_mask=ignore, need_weights=False)
        out = torch.where(has_key[:, None, None], out, torch.zeros_like(out))
        x = target + self.drop(out)
        return x + self.drop(self.ff(self.norm_ff(x)))


class FusionModel(nn.Module):
    def __init__(self, input_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        self.names = list(input_shapes)
        n = len(self.names)
        width = HIDDEN * max(n - 1, 1)
        self.proj = nn.ModuleList(
            nn.Linear(int(shape[-1]), HIDDEN) for shape in input_shapes.values()
        )
        # cross[t][j]: block from the j-th source (all modalities but t, in order) into target t.
        self.cross = nn.ModuleList(
            nn.ModuleList(CrossModalBlock(HIDDEN) for _ in range(n - 1)) for _ in range(n)
        )
        self.self_attn = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width,
                N_HEADS,
                dim_feedforward=4 * width,
                dropout=DROPOUT,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(n)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(n))
        self.head = nn.Sequential(
            nn.Linear(n * width, HIDDEN),
            nn.GELU(),
            nn.Dropout(DROPOUT),
            nn.Linear(HIDDEN, num_classes),
        )

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        seqs, masks = [], []
        for name, proj in zip(self.names, self.proj):
            x, mask = _as_tokens(inputs[name], inputs.get(name + "_mask"))
            seqs.append(proj(x) + _sinusoid(x.shape[1], HIDDEN, x.device))
            masks.append(mask)
        pooled = []
        for t in range(len(seqs)):
            sources = [s for s in range(len(seqs)) if s != t]
            streams = [
                block(seqs[t], seqs[s], masks[s]) for block, s in zip(self.cross[t], sources)
            ] or [seqs[t]]
            # An all-padding target keeps its keys (no NaN); the masked mean then drops it anyway.
            ignore = ~masks[t] & masks[t].any(dim=1, keepdim=True)
            h = self.self_attn[t](torch.cat(streams, dim=-1), src_key_padding_mask=ignore)
            pooled.append(_masked_mean(self.norms[t](h), masks[t]))
        return self.head(torch.cat(pooled, dim=-1))
