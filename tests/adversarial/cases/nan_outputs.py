"""Adversarial candidate: forward returns NaN (passes the static policy)

Expected: static policy on -> error; static policy off -> error.
Placeholders replaced by the test: "MARKER_DIR", "TASK_DIR", 47474 (listener port).
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

    def forward(self, **inputs):
        return torch.full((inputs[self.names[0]].shape[0], self.head.out_features), float("nan"))
        x = torch.cat([inputs[n].flatten(1) for n in self.names], dim=1)
        return self.head(x)
