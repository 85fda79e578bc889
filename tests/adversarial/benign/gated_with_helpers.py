"""Benign: gated fusion with math, F, nn.init, getattr with a literal name, an f-string and a helper."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

HIDDEN = 16
SCALE = 1.0 / math.sqrt(HIDDEN)


def pool(x: Tensor, mask: Tensor | None = None) -> Tensor:
    if x.dim() == 2:
        return x
    if mask is None:
        return x.mean(dim=1)
    w = mask.float().unsqueeze(-1)
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


class FusionModel(nn.Module):
    """Each modality projected, gated by a softmax over modalities, summed."""

    def __init__(self, input_shapes, num_classes):
        super().__init__()
        self.names = list(input_shapes)
        for i, shape in enumerate(input_shapes.values()):
            self.add_module(f"proj{i}", nn.Linear(int(shape[-1]), HIDDEN))
        self.gate = nn.Linear(HIDDEN * len(self.names), len(self.names))
        self.out = nn.Linear(HIDDEN, num_classes)
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self._eps = 1e-6

    def forward(self, **inputs):
        hs = [torch.tanh(getattr(self, "proj0")(pool(inputs[self.names[0]], inputs.get(self.names[0] + "_mask"))))]
        for i, name in enumerate(self.names[1:], start=1):
            hs.append(torch.tanh(self.get_submodule(f"proj{i}")(pool(inputs[name], inputs.get(name + "_mask")))))
        weights = F.softmax(self.gate(torch.cat(hs, dim=-1)) * SCALE, dim=-1)
        fused = (torch.stack(hs, dim=1) * weights.unsqueeze(-1)).sum(dim=1) + self._eps
        return self.out(fused)
