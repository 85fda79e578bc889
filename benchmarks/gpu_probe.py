"""Device check for issue 8 (features resident on the GPU): can a sandboxed candidate process use CUDA?

Not a speed benchmark: a one-minute check to run on a machine with a GPU before building the GPU
path. It evaluates a probe module (static policy off, since it must touch `torch.cuda`) through the
real sandbox under several layer sets and memory limits; the probe's constructor initialises CUDA,
runs one kernel and reports the outcome in its error text, which is printed per variant. Each
layer that a GPU path must adapt shows up as the variant whose message changes:
- RLIMIT_AS (`max_memory_mb`): CUDA reserves far more virtual address space than it uses;
- Landlock: /dev/nvidia*, /proc/driver/nvidia and /sys are outside the readable roots;
- seccomp: the driver's ioctl/mmap patterns, or threads it starts.
On a machine without CUDA every variant prints "CUDA not available" (that is the expected output).

Run: python benchmarks/gpu_probe.py [--task pid-synergy]
"""

from __future__ import annotations

import argparse
import re
import sys

PROBE = '''
import torch
import torch.nn as nn


class FusionModel(nn.Module):
    def __init__(self, input_shapes, num_classes):
        super().__init__()
        try:
            if torch.cuda.is_available():
                x = torch.ones(1 << 20, device="cuda")
                total = float((x * 2).sum())
                msg = "CUDA OK: " + torch.cuda.get_device_name(0) + ", kernel result " + str(total)
            else:
                msg = "CUDA not available (torch " + torch.__version__ + ", built for CUDA " + str(torch.version.cuda) + ")"
        except Exception as exc:
            msg = "CUDA failed: " + type(exc).__name__ + ": " + str(exc)
        raise RuntimeError("PROBE " + msg)
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="pid-synergy")
    args = parser.parse_args()

    from autofusion.evaluation import ProxyEvaluator, TrainSettings
    from autofusion.sandbox.harden import Hardening
    from autofusion.sandbox.pool import Sandbox
    from autofusion.tasks.builtin import resolve_task

    task = resolve_task(args.task)
    variants = [
        ("all layers, 4 GB", Hardening(), 4096),
        ("all layers, 64 GB", Hardening(), 65536),
        ("no Landlock, 64 GB", Hardening(landlock=False), 65536),
        ("no seccomp, 64 GB", Hardening(seccomp=False), 65536),
        ("no kernel layers, 64 GB", Hardening.off(), 65536),
    ]
    for name, layers, memory_mb in variants:
        with Sandbox(task, hardening=layers, allow_weak=True) as box:
            evaluator = ProxyEvaluator(task, sandbox=box, static_policy=False)
            result = evaluator.smoke(PROBE, TrainSettings(max_memory_mb=memory_mb, timeout_s=120, smoke_timeout_s=120))
            found = re.search(r"PROBE (.*)", result.error or "")
            error = (result.error or "")[-300:]
            outcome = found.group(1) if found else f"{result.status.value} at {result.stage}: {error}"
            print(f"{name:<26} {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
