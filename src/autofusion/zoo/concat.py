"""Concatenation fusion: the simplest reference in the AutoFusion zoo.

Pools each modality to a vector, concatenates the raw pooled features and classifies them with a
one-hidden-layer MLP. This is the usual "concat" baseline of multimodal papers (e.g. the unimodal-
feature concatenation baselines in Baltrusaitis et al., "Multimodal Machine Learning: A Survey and
Taxonomy", TPAMI 2019).

Generalisation: any number of modalities, taken in the order of ``input_shapes``. A vector modality
``[D]`` is used as is; a token modality ``[L, D]`` is reduced by a masked mean over its real tokens
(``<name>_mask`` True = real token; a missing mask means every token is real), so padded tokens
never reach the output.

Layers: Linear(sum D_m, HIDDEN) -> GELU -> Dropout -> Linear(HIDDEN, num_classes).
Does not: normalise or project the inputs before concatenating them.
Standalone candidate file: imports only torch.
"""

import torch
import torch.nn as nn

HIDDEN = 64
DROPOUT = 0.1


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
        in_dim = sum(int(shape[-1]) for shape in input_shapes.values())
        self.head = nn.Sequential(
            nn.Linear(in_dim, HIDDEN),
            nn.GELU(),
            nn.Dropout(DROPOUT),
            nn.Linear(HIDDEN, num_classes),
        )

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        pooled = [_masked_mean(*_as_tokens(inputs[n], inputs.get(n + "_mask"))) for n in self.names]
        return self.head(torch.cat(pooled, dim=-1))
