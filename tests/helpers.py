"""Helpers shared by tests: tiny tasks made on the fly and a plain concat candidate."""

from __future__ import annotations

from pathlib import Path

import torch

from autofusion.tasks.format import write_task

CONCAT = '''
import torch
import torch.nn as nn


class FusionModel(nn.Module):
    """Pool tokens, concatenate, MLP."""

    def __init__(self, input_shapes, num_classes):
        super().__init__()
        self.names = list(input_shapes)
        total = sum(shape[-1] for shape in input_shapes.values())
        self.mlp = nn.Sequential(nn.Linear(total, 32), nn.GELU(), nn.Linear(32, num_classes))

    def forward(self, **inputs):
        parts = []
        for name in self.names:
            x = inputs[name]
            if x.dim() == 3:
                mask = inputs.get(name + "_mask")
                if mask is None:
                    x = x.mean(1)
                else:
                    w = mask.float().unsqueeze(-1)
                    x = (x * w).sum(1) / w.sum(1).clamp(min=1.0)
            parts.append(x)
        return self.mlp(torch.cat(parts, dim=-1))
'''


def make_split(n: int, gen: torch.Generator, label_mask: bool = False) -> dict[str, torch.Tensor]:
    """Two modalities; the label is the XOR of a sign in each (needs both)."""
    a = torch.randn(n, 6, generator=gen)
    b = torch.randn(n, 4, 5, generator=gen)
    lengths = torch.randint(1, 5, (n,), generator=gen)
    mask = torch.arange(4)[None, :] < lengths[:, None]
    b = b * mask[..., None]
    label = ((a[:, 0] > 0) ^ (b[:, 0, 0] > 0)).long()
    out = {"a": a, "b": b, "b_mask": mask, "label": label}
    if label_mask:
        lm = torch.ones(n, 3, dtype=torch.bool)
        lm[:, 2] = False
        out["label"] = label
        out["label_mask"] = lm
    return out


def write_tiny_task(root: Path, n_train: int = 240, n_eval: int = 80, seed: int = 0, num_classes: int = 2,
                    label_mask: bool = False) -> Path:
    gen = torch.Generator().manual_seed(seed)
    splits = {s: make_split(n, gen, label_mask) for s, n in (("train", n_train), ("val", n_eval), ("test", n_eval))}
    return write_task(root, "tiny-xor", num_classes, splits)
