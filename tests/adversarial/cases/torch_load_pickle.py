"""Adversarial candidate: torch.load of a crafted pickle that runs os.system

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
            import pickle, os
            class P:
                def __reduce__(self):
                    return (os.system, ("touch MARKER_DIR/pwned_pickle",))
            open("p.pt", "wb").write(pickle.dumps(P()))
            torch.load("p.pt", weights_only=False)
        except Exception:
            pass

    def forward(self, **inputs):
        x = torch.cat([inputs[n].flatten(1) for n in self.names], dim=1)
        return self.head(x)
