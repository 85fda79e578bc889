"""Adversarial candidate: patch the trainer's trusted counters to report 1 parameter

Expected: static policy on -> rejected; static policy off -> ok.
Measured params: 156 (the count comes from the trained model's graph, replayed on the trusted side,
not from the patched counter: Linear(4*8 + 6, 4) has 156).
Placeholders replaced by the test: "MARKER_DIR", "TASK_DIR", 47474 (listener port).
"""

import torch
import torch.nn as nn



def leak(what):
    raise RuntimeError("ESCAPED " + str(what)[:3000])

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
        try:
            import sys
            tr = sys.modules["autofusion.evaluation.trainer"]
            tr._NUMEL = lambda p: 0
        except Exception:
            pass

    def forward(self, **inputs):
        x = torch.cat([inputs[n].flatten(1) for n in self.names], dim=1)
        return self.head(x)
