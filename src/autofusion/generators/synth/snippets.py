"""Helper functions and classes that rendered candidates may need, as source text.

Each snippet is a top-level definition copied verbatim into a candidate that uses it; `render.py`
picks only the snippets the genome needs. Snippets refer to the candidate's module constants
(WIDTH, HEADS, DROPOUT, ...) by name. This file holds text only: it imports nothing from torch.
"""

from __future__ import annotations

AS_TOKENS = '''
def as_tokens(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A vector [B, D] becomes one real token [B, 1, D]; a missing mask means all tokens are real."""
    if x.dim() == 2:
        x, mask = x.unsqueeze(1), None
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return x, mask.to(torch.bool)
'''

MASKED_MEAN = '''
def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens; padding is replaced (not multiplied) by zero so no value leaks."""
    keep = mask.unsqueeze(-1)
    total = torch.where(keep, x, torch.zeros_like(x)).sum(dim=1)
    return total / keep.sum(dim=1).clamp(min=1).to(x.dtype)
'''

MASKED_MAX = '''
def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Feature-wise max over real tokens (zeros for a sample without real tokens)."""
    lowest = torch.finfo(x.dtype).min
    best = x.masked_fill(~mask.unsqueeze(-1), lowest).amax(dim=1)
    return torch.where(mask.any(dim=1, keepdim=True), best, torch.zeros_like(best))
'''

ATTENTION_POOL = '''
class AttentionPool(nn.Module):
    """Learned attention pooling: a softmax over real tokens of a scalar score per token."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(x).squeeze(-1).masked_fill(~mask, torch.finfo(x.dtype).min)
        weights = scores.softmax(dim=1) * mask  # a sample without real tokens pools to zero
        return torch.einsum("bl,bld->bd", weights, x)
'''

KEY_PADDING = '''
def key_padding(mask: torch.Tensor) -> torch.Tensor:
    """Attention key padding mask (True = ignore); a sample without real tokens keeps its keys so
    the softmax stays finite (its output is pooled away by the mask afterwards)."""
    return ~mask & mask.any(dim=1, keepdim=True)
'''

PREPEND_CLS = '''
def prepend_cls(cls: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepend a learned [CLS] token (always real) to tokens [B, L, D] and to their mask."""
    batch = x.shape[0]
    x = torch.cat([cls.expand(batch, 1, -1), x], dim=1)
    mask = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=mask.device), mask], dim=1)
    return x, mask
'''

SINUSOID = '''
def sinusoid(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Fixed sinusoidal positions [length, dim] (Vaswani et al. 2017)."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    rate = torch.exp(torch.arange(0, dim, 2, device=device).float() * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)
    return table
'''

TRANSFORMER_LAYER = '''
def transformer_layer(width: int) -> nn.TransformerEncoderLayer:
    """A pre-norm self-attention layer with a 4 x width feed-forward."""
    return nn.TransformerEncoderLayer(
        width, HEADS, dim_feedforward=4 * width, dropout=DROPOUT,
        activation={activation}, batch_first=True, norm_first=True,
    )
'''

MODALITY_ENCODER = '''
class ModalityEncoder(nn.Module):
    """A token-wise projection followed by self-attention layers over the modality's own tokens."""

    def __init__(self, project: nn.Module, n_layers: int) -> None:
        super().__init__()
        self.project = project
        self.layers = nn.ModuleList(transformer_layer(WIDTH) for _ in range(n_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=key_padding(mask))
        return x
'''

TFN_FACTOR_DIM = '''
def factor_dim(n_modalities: int) -> int:
    """Largest d <= WIDTH with (d + 1) ** n_modalities <= FUSED_MAX."""
    if 2**n_modalities > FUSED_MAX:
        raise ValueError(
            f"{n_modalities} modalities cannot fit a fusion tensor of at most {FUSED_MAX} entries"
        )
    d = 1
    while d < WIDTH and (d + 2) ** n_modalities <= FUSED_MAX:
        d += 1
    return d
'''

CROSS_ATTENTION = '''
class CrossAttention(nn.Module):
    """`query` tokens attend to `source` tokens; padded source tokens are ignored.{doc}"""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(WIDTH, HEADS, dropout=DROPOUT, batch_first=True){norm_init}

    def forward(self, query: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        # A sample whose source is all padding gets a zero attention output instead of NaN.
        has_key = source_mask.any(dim=1)
        out, _ = self.attn(query, source, source, key_padding_mask=key_padding(source_mask), need_weights=False)
        out = torch.where(has_key[:, None, None], out, torch.zeros_like(out))
        return {combine}
'''

CROSS_MODAL_BLOCK = '''
class CrossModalBlock(nn.Module):
    """One MulT cross-modal layer: pre-norm attention from target to source, then a feed-forward."""

    def __init__(self) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(WIDTH)
        self.norm_kv = nn.LayerNorm(WIDTH)
        self.attn = nn.MultiheadAttention(WIDTH, HEADS, dropout=DROPOUT, batch_first=True)
        self.norm_ff = nn.LayerNorm(WIDTH)
        self.ff = nn.Sequential(
            nn.Linear(WIDTH, 4 * WIDTH), {act}, nn.Dropout(DROPOUT), nn.Linear(4 * WIDTH, WIDTH)
        )
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, target: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        # A sample whose source is all padding gets a zero attention output instead of NaN.
        has_key = source_mask.any(dim=1)
        kv = self.norm_kv(source)
        out, _ = self.attn(self.norm_q(target), kv, kv, key_padding_mask=key_padding(source_mask), need_weights=False)
        out = torch.where(has_key[:, None, None], out, torch.zeros_like(out))
        x = target + self.drop(out)
        return x + self.drop(self.ff(self.norm_ff(x)))
'''
