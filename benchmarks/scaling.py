"""How the cost of one evaluation grows with the number of samples and the number of tokens.

Synthetic tasks (a token modality [L, 32] with a padding mask, a vector modality [32]; the label
depends on both) with N training samples (val and test N/4 each) and L tokens; each zoo module is
trained through the search's workers (`LocalExecutor`, warm zygote) for a fixed number of epochs.
Reported: training seconds (the parent's clock around training, smoke run excluded), seconds per
1,000 samples, and the ratio to the smallest size. Target: cost linear in samples (constant seconds
per 1,000 samples); in tokens it is linear for pooling modules and grows faster for attention.

Run: python benchmarks/scaling.py [--modules concat,cross_attention] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

SAMPLES = (500, 1000, 2000, 4000)
TOKENS = (8, 16, 32, 64)


def make_task(root: Path, n: int, length: int, seed: int = 0) -> Path:
    from autofusion.tasks.format import write_task

    gen = torch.Generator().manual_seed(seed)
    splits = {}
    for split, size in (("train", n), ("val", n // 4), ("test", n // 4)):
        tokens = torch.randn(size, length, 32, generator=gen)
        lengths = torch.randint(1, length + 1, (size,), generator=gen)
        mask = torch.arange(length)[None, :] < lengths[:, None]
        vec = torch.randn(size, 32, generator=gen)
        label = ((tokens[:, 0, 0] > 0) ^ (vec[:, 0] > 0)).long()
        splits[split] = {"tokens": tokens * mask[..., None], "tokens_mask": mask, "vec": vec, "label": label}
    return write_task(root / f"n{n}-l{length}", f"scaling-n{n}-l{length}", 2, splits)


def measure(task_dir: Path, modules: list[str], epochs: int) -> dict[str, float]:
    from autofusion.evaluation.executors import LocalExecutor
    from autofusion.evaluation.protocol import TrainSettings
    from autofusion.zoo import zoo_source

    executor = LocalExecutor.start(task_dir, workers=1)
    settings = TrainSettings(epochs=epochs, patience=0, threads=1)
    out = {}
    try:
        for name in modules:
            result = executor.run(zoo_source(name), settings)
            if not result.ok:
                raise SystemExit(f"{name} failed on {task_dir.name}: {result.error}")
            out[name] = result.train_seconds
    finally:
        executor.shutdown()
    return out


def table(title: str, sizes: list[tuple[int, int]], key: int, modules: list[str], root: Path, epochs: int) -> None:
    print(f"\n{title}")
    print(f"{'N':>6} {'L':>4} " + " ".join(f"{m + ' s':>20} {'s/1k':>6} {'x':>5}" for m in modules))
    first: dict[str, float] = {}
    for n, length in sizes:
        secs = measure(make_task(root, n, length), modules, epochs)
        unit = n / 1000 if key == 0 else length
        cells = []
        for m in modules:
            per = secs[m] / (n / 1000)
            first.setdefault(m, secs[m] / unit)
            cells.append(f"{secs[m]:20.2f} {per:6.2f} {secs[m] / unit / first[m]:5.2f}")
        print(f"{n:6d} {length:4d} " + " ".join(cells))
    print("x: cost per unit of the varied size relative to the smallest (1.00 everywhere = linear)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", default="concat,cross_attention")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    modules = args.modules.split(",")
    print(f"{args.epochs} epochs, 1 thread, batch 64; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        table("samples (L = 16 tokens)", [(n, 16) for n in SAMPLES], 0, modules, Path(tmp), args.epochs)
        table("tokens (N = 1000 samples)", [(1000, length) for length in TOKENS], 1, modules, Path(tmp), args.epochs)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
