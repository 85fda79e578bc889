"""Benign: mean-pool every modality, concatenate, two-layer MLP (the honest reference)."""
import torch
import torch.nn as nn

HIDDEN = 32


class FusionModel(nn.Module):
    def __init__(self, input_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        self.names = list(input_shapes)
        total = sum(int(shape[-1]) for shape in input_shapes.values())
        self.mlp = nn.Sequential(nn.Linear(total, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, num_classes))

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        parts = []
        for name in self.names:
            x = inputs[name]
            parts.append(x.mean(dim=1) if x.dim() == 3 else x)
        return self.mlp(torch.cat(parts, dim=-1))
