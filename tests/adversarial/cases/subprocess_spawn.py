"""Adversarial candidate: subprocess.run a shell

Expected: static policy on -> rejected; static policy off -> ok.
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
            import subprocess
            subprocess.run(["sh", "-c", "touch MARKER_DIR/pwned_sub"])
        except Exception:
            pass

    def forward(self, **inputs):
        x = torch.cat([inputs[n].flatten(1) for n in self.names], dim=1)
        return self.head(x)
