"""Adversarial candidate: override parameters() so the trainer counts zero params and trains nothing.

Expected: static policy on -> rejected; static policy off -> error (the trusted counter calls
nn.Module.parameters captured before any candidate code, so params are still counted honestly, and
the optimizer, given no parameters, refuses to train).
"""
import torch
import torch.nn as nn


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

    def parameters(self, recurse=True):
        return iter([])

    def forward(self, **inputs):
        x = torch.cat([inputs[n].flatten(1) for n in self.names], dim=1)
        return self.head(x)
