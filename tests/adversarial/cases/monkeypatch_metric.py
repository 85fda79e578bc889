"""Adversarial candidate: patch the trainer's predict and the metric module in its process

Expected: static policy on -> rejected; static policy off -> error.
(The forged predictions do not match the trusted replay of the model's graph.)
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
            tr.predict = lambda model, inputs, mask: (torch.arange(next(iter(inputs.values())).shape[0]) % 4 == 0).float()[:, None].repeat(1, 4).numpy()
            m = sys.modules.get("autofusion.evaluation.metrics")
            if m is not None:
                m.accuracy = lambda *a, **k: 1.0
        except Exception:
            pass

    def forward(self, **inputs):
        x = torch.cat([inputs[n].flatten(1) for n in self.names], dim=1)
        return self.head(x)
