"""Gated Multimodal Unit (Arevalo et al., "Gated Multimodal Units for Information Fusion",
ICLR 2017 workshop).

Each modality gets a tanh hidden representation h_m = tanh(W_m x_m). A gate computed from all
inputs at once decides, per hidden unit, how much each modality contributes:

    z = softmax_m(W_z [x_1, ..., x_M]),    h = sum_m z_m * h_m,    logits = classifier(h).

Generalisation: the paper's bimodal unit uses one sigmoid gate z and (1 - z); with M modalities the
gate becomes a softmax over modalities, per hidden unit (for M = 2 this is exactly a sigmoid of the
difference of two linear maps). Modalities are taken in the order of ``input_shapes``; tokens
``[L, D]`` are reduced by a masked mean over real tokens (``<name>_mask`` True = real; no mask = all
real); a vector ``[D]`` is used as is.

Layers: per modality Linear(D_m, HIDDEN) + tanh; gate Linear(sum D_m, M * HIDDEN) viewed as
[M, HIDDEN], softmax over M; head Linear(HIDDEN, HIDDEN) -> GELU -> Dropout -> Linear(HIDDEN, C).
Does not: gate tokens individually (gating is on pooled vectors, as in the paper).
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
        dims = [int(shape[-1]) for shape in input_shapes.values()]
        self.hidden = nn.ModuleList(nn.Linear(d, HIDDEN) for d in dims)
        self.gate = nn.Linear(sum(dims), len(dims) * HIDDEN)
        self.head = nn.Sequential(
            nn.Linear(HIDDEN, HIDDEN),
            nn.GELU(),
            nn.Dropout(DROPOUT),
            nn.Linear(HIDDEN, num_classes),
        )

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        pooled = [_masked_mean(*_as_tokens(inputs[n], inputs.get(n + "_mask"))) for n in self.names]
        h = torch.stack([torch.tanh(layer(x)) for layer, x in zip(self.hidden, pooled)], dim=1)
        z = self.gate(torch.cat(pooled, dim=-1)).view(-1, len(self.names), HIDDEN).softmax(dim=1)
        return self.head((z * h).sum(dim=1))
