"""Tensor Fusion Network (Zadeh et al., "Tensor Fusion Network for Multimodal Sentiment Analysis",
EMNLP 2017).

Each modality is embedded to a small vector z_m, a constant 1 is appended, and the fusion tensor is
the outer product of the [z_m, 1] over all modalities. Because of the appended 1 the flattened
tensor holds every unimodal term, every bimodal product, ... up to the full M-modal product. A
one-hidden-layer MLP (the paper's "inference subnetwork") classifies the flattened tensor.

Generalisation: the paper fuses exactly three modalities; here any number M, in the order of
``input_shapes``. The modality embedding is pool -> Linear(D_m, d) with one d for all modalities,
the largest d <= HIDDEN such that (d + 1) ** M <= FUSED_MAX (4096), so the fusion tensor and the
first head layer stay bounded whatever M is (M=1: d=64; M=2: 63; M=3: 15; M=4: 7; M=12: 1). Pooling
of tokens ``[L, D]`` is a masked mean over real tokens (``<name>_mask`` True = real; no mask = all
real); a vector ``[D]`` is used as is.

Layers: per modality Linear(D_m, d); head Linear((d + 1) ** M, HIDDEN) -> GELU -> Dropout ->
Linear(HIDDEN, num_classes).
Does not: use the paper's LSTM / deep subnetworks for each modality (AutoFusion inputs are already
extracted features). More than 12 modalities cannot fit the bound and are refused.
Standalone candidate file: imports only torch.
"""

import torch
import torch.nn as nn

HIDDEN = 64
DROPOUT = 0.1
FUSED_MAX = 4096


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


def factor_dim(n_modalities: int) -> int:
    """Largest d <= HIDDEN with (d + 1) ** n_modalities <= FUSED_MAX."""
    if 2**n_modalities > FUSED_MAX:
        raise ValueError(
            f"tfn: {n_modalities} modalities cannot fit a fusion tensor of at most {FUSED_MAX} "
            "entries even with d=1; use at most 12 modalities or another fusion"
        )
    d = 1
    while d < HIDDEN and (d + 2) ** n_modalities <= FUSED_MAX:
        d += 1
    return d


class FusionModel(nn.Module):
    def __init__(self, input_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        self.names = list(input_shapes)
        d = factor_dim(len(self.names))
        self.embed = nn.ModuleList(nn.Linear(int(shape[-1]), d) for shape in input_shapes.values())
        fused_dim = (d + 1) ** len(self.names)
        self.head = nn.Sequential(
            nn.Linear(fused_dim, HIDDEN),
            nn.GELU(),
            nn.Dropout(DROPOUT),
            nn.Linear(HIDDEN, num_classes),
        )

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        fused = None
        for name, embed in zip(self.names, self.embed):
            z = embed(_masked_mean(*_as_tokens(inputs[name], inputs.get(name + "_mask"))))
            z = torch.cat([z, torch.ones_like(z[:, :1])], dim=-1)
            # Outer product with what has been fused so far, flattened: [B, prod(d + 1)].
            fused = z if fused is None else (fused.unsqueeze(2) * z.unsqueeze(1)).flatten(1)
        return self.head(fused)
