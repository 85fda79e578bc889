"""Adversarial candidate: ctypes unshare/mount/setuid(0)/io_uring_setup

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
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            results = [libc.unshare(0x10000000), libc.syscall(425, 8, 0), libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)]
            try:
                os.setuid(0)
                results.append("setuid")
            except OSError:
                pass
            if any(r == 0 for r in results[:3]) or "setuid" in results:
                leak(results)
        except Exception:
            pass

    def forward(self, **inputs):
        x = torch.cat([inputs[n].flatten(1) for n in self.names], dim=1)
        return self.head(x)
