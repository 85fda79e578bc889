"""Adversarial candidate: a Tensor subclass with __torch_function__ that rewrites results

Expected: static policy on -> rejected; static policy off -> contained.
Placeholders replaced by the test: "MARKER_DIR", "TASK_DIR", 47474 (listener port).
"""

import torch
import torch.nn as nn



class Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        return out


class FusionModel(nn.Module):
    def __init__(self, input_shapes, num_classes):
        super().__init__()
        self.names = list(input_shapes)
        width = 0
        for shape in input_shapes.values():
            n = 1
            for d in shape:
                n = n * int(d)
            width = width + n
        self.head = nn.Linear(width, num_classes)

    def forward(self, **inputs):
        return self.head(torch.cat([inputs[n].flatten(1) for n in self.names], dim=1)).as_subclass(Liar)
        x = torch.cat([inputs[n].flatten(1) for n in self.names], dim=1)
        return self.head(x)
