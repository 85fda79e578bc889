"""Cross-attention fusion: the first modality queries every other modality.

The query modality's tokens attend to the tokens of each other modality with multi-head scaled
dot-product attention (Vaswani et al., "Attention Is All You Need", NeurIPS 2017), followed by a
residual connection and LayerNorm, as in the co-/cross-attention layers of ViLBERT (Lu et al.,
NeurIPS 2019) and LXMERT (Tan & Bansal, EMNLP 2019):

    q = W_0 x_0;   a_m = LayerNorm(q + MHA_m(q, W_m x_m, W_m x_m));
    logits = classifier([pool(q), pool(a_1), ..., pool(a_{M-1})]).

Generalisation: the first modality of ``input_shapes`` is the query, every other modality is a
key/value source with its own projection, attention and LayerNorm. A vector modality is one token.
Masks (``<name>_mask`` True = real token; no mask = all real) become the ``key_padding_mask`` of the
attention, and every pool is a masked mean over the query's real tokens, so padded tokens on either
side never reach the output. A sample whose source tokens are all padding gets a zero attention
output instead of NaN. With a single modality the model is projection -> pool -> classifier.

Layers: query Linear(D_0, HIDDEN); per source Linear(D_m, HIDDEN), nn.MultiheadAttention(HIDDEN,
4 heads, dropout 0.1, batch_first), LayerNorm(HIDDEN); head Linear(M * HIDDEN, HIDDEN) -> GELU ->
Dropout -> Linear(HIDDEN, num_classes).
Does not: add positional information or feed-forward sublayers (one attention step per source).
Standalone candidate file: imports only torch.
"""

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


def _attend(
    attn: nn.MultiheadAttention,
    query: torch.Tensor,
    source: torch.Tensor,
    source_mask: torch.Tensor,
) -> torch.Tensor:
    """attn(query, source, source) ignoring padded source tokens.

    A sample whose source is all padding would make the softmax NaN: its keys are left unmasked
    for the computation and its output is replaced by zeros, so the padding still cannot leak.
    """
    has_key = source_mask.any(dim=1)
    ignore = ~source_mask & has_key.unsqueeze(1)
    out, _ = attn(query, source, source, key_padding_mask=ignore, need_weights=False)
    return torch.where(has_key[:, None, None], out, torch.zeros_like(out))


class FusionModel(nn.Module):
    def __init__(self, input_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        self.names = list(input_shapes)
        dims = [int(shape[-1]) for shape in input_shapes.values()]
        self.query = nn.Linear(dims[0], HIDDEN)
        self.sources = nn.ModuleList(nn.Linear(d, HIDDEN) for d in dims[1:])
        self.attns = nn.ModuleList(
            nn.MultiheadAttention(HIDDEN, N_HEADS, dropout=DROPOUT, batch_first=True)
            for _ in dims[1:]
        )
        self.norms = nn.ModuleList(nn.LayerNorm(HIDDEN) for _ in dims[1:])
        self.head = nn.Sequential(
            nn.Linear(len(dims) * HIDDEN, HIDDEN),
            nn.GELU(),
            nn.Dropout(DROPOUT),
            nn.Linear(HIDDEN, num_classes),
        )

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        x, q_mask = _as_tokens(inputs[self.names[0]], inputs.get(self.names[0] + "_mask"))
        q = self.query(x)
        pooled = [_masked_mean(q, q_mask)]
        for i, name in enumerate(self.names[1:]):
            s, s_mask = _as_tokens(inputs[name], inputs.get(name + "_mask"))
            attended = self.norms[i](q + _attend(self.attns[i], q, self.sources[i](s), s_mask))
            pooled.append(_masked_mean(attended, q_mask))
        return self.head(torch.cat(pooled, dim=-1))
