"""Late fusion: one classifier per modality, logits averaged.

Each modality is pooled and classified on its own by a one-hidden-layer MLP; the final logits are
the mean of the per-modality logits (decision-level / late fusion, as in Snoek et al., "Early versus
Late Fusion in Semantic Video Analysis", ACM MM 2005, and the late-fusion baselines of Baltrusaitis
et al., TPAMI 2019).

Generalisation: any number of modalities in the order of ``input_shapes``. A vector ``[D]`` is used
as is; tokens ``[L, D]`` are reduced by a masked mean over real tokens (``<name>_mask`` True = real;
no mask = all real).

Per modality: Linear(D_m, HIDDEN) -> GELU -> Dropout -> Linear(HIDDEN, num_classes).
Does not: model interactions between modalities. The logits are a sum of per-modality terms, so a
label that depends on a product of modalities (e.g. an XOR) is out of its reach by construction.
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
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.Linear(int(shape[-1]), HIDDEN),
                nn.GELU(),
                nn.Dropout(DROPOUT),
                nn.Linear(HIDDEN, num_classes),
            )
            for shape in input_shapes.values()
        )

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        logits = []
        for name, head in zip(self.names, self.heads):
            x, mask = _as_tokens(inputs[name], inputs.get(name + "_mask"))
            logits.append(head(_masked_mean(x, mask)))
        return torch.stack(logits, dim=0).mean(dim=0)
