"""Adversarial candidate: find the job socket and forge smoke_ok/epoch frames with guessed logits

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
            import socket, json, struct
            import numpy as np
            for fd in range(3, 64):
                try:
                    s = socket.socket(fileno=fd)
                except OSError:
                    continue
                def frame(header, arr=None):
                    if arr is not None:
                        header["array"] = {"dtype": "float32", "shape": list(arr.shape)}
                    raw = json.dumps(header).encode()
                    return b"AFWIRE01" + struct.pack("!I", len(raw)) + raw + (b"" if arr is None else arr.tobytes())
                guess = np.zeros((200, 4), dtype=np.float32)
                guess[:, 0] = 1
                s.sendall(frame({"type": "smoke_ok", "params": 1, "flops": 1}))
                s.sendall(frame({"type": "epoch", "epoch": 0, "train_loss": 0.0, "seconds": 0.0}, guess))
                s.sendall(frame({"type": "epoch_test", "epoch": 0}, guess))
                s.detach()
        except Exception:
            pass

    def forward(self, **inputs):
        x = torch.cat([inputs[n].flatten(1) for n in self.names], dim=1)
        return self.head(x)
