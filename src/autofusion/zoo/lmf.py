"""Low-rank Multimodal Fusion (Liu et al., "Efficient Low-rank Multimodal Fusion with Modality-
Specific Factors", ACL 2018).

LMF computes the Tensor Fusion Network's output without building the outer-product tensor: the
fusion weight is decomposed into RANK modality-specific factors W_m^(i) of shape [D_m + 1, HIDDEN].
Each modality (with a constant 1 appended) is multiplied by its factors, the results are multiplied
elementwise across modalities, and the RANK terms are combined by learned weights plus a bias:

    h = sum_i w_i * prod_m ([x_m, 1] @ W_m^(i)) + b,    logits = classifier(h).

Generalisation: any number of modalities in the order of ``input_shapes`` (the paper uses three).
Tokens ``[L, D]`` are reduced by a masked mean over real tokens (``<name>_mask`` True = real; no
mask = all real); a vector ``[D]`` is used as is. Factors are initialised with std 1/sqrt(D_m + 1)
so each factor output has unit scale and the product over modalities neither explodes nor vanishes.

Parameters: per modality factor [RANK, D_m + 1, HIDDEN]; rank weights [RANK]; bias [HIDDEN]; head
Linear(HIDDEN, HIDDEN) -> GELU -> Dropout -> Linear(HIDDEN, num_classes).
Does not: use the paper's per-modality LSTM / subnetworks (inputs are extracted features).
Standalone candidate file: imports only torch and math.
"""

import math

import torch
import torch.nn as nn

HIDDEN = 64
DROPOUT = 0.1
RANK = 4


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


class FusionModel(nn.Module):
    def __init__(self, input_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        self.names = list(input_shapes)
        self.factors = nn.ParameterList()
        for shape in input_shapes.values():
            d_in = int(shape[-1]) + 1
            self.factors.append(nn.Parameter(torch.randn(RANK, d_in, HIDDEN) / math.sqrt(d_in)))
        self.rank_weights = nn.Parameter(torch.full((RANK,), 1.0 / RANK))
        self.bias = nn.Parameter(torch.zeros(HIDDEN))
        self.head = nn.Sequential(
            nn.Linear(HIDDEN, HIDDEN),
            nn.GELU(),
            nn.Dropout(DROPOUT),
            nn.Linear(HIDDEN, num_classes),
        )

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        product = None
        for name, factor in zip(self.names, self.factors):
            x = _masked_mean(*_as_tokens(inputs[name], inputs.get(name + "_mask")))
            x = torch.cat([x, torch.ones_like(x[:, :1])], dim=-1)
            term = torch.einsum("bd,rdh->brh", x, factor)  # [B, RANK, HIDDEN]
            product = term if product is None else product * term
        fused = torch.einsum("brh,r->bh", product, self.rank_weights) + self.bias
        return self.head(fused)
