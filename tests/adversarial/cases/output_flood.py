"""Adversarial candidate: print hundreds of MB to stdout

Expected: static policy on -> rejected; static policy off -> contained.
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
            import signal
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            for _ in range(200):
                print("x" * (1 << 20))
        except Exception:
            pass

    def forward(self, **inputs):
        x = torch.cat([inputs[n].flatten(1) for n in self.names], dim=1)
        return self.head(x)
