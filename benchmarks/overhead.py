"""Per-candidate overhead: the search's workers and `autofusion evaluate` vs. a bare PyTorch loop.

The same module (a zoo file), the same epochs, batch size, threads and seed, measured side by side
in one run, each `--repeats` times (median reported):
- bare:     the training in this process — train an epoch, predict val and test, repeat;
- workers:  `LocalExecutor.run` through a warm zygote (fork, isolation, smoke run, trace, the wire,
            the trusted replay in a second process, metrics in the parent): what every candidate
            of a search pays;
- evaluate: `autofusion evaluate FILE --task T` as a subprocess (interpreter and torch start-up,
            task load, zygote start included): what a user pays for one file.
Bare and workers run in back-to-back pairs (alternating which goes first), so the load drifts of a
shared machine hit both; the ratio of medians and the median of the pairwise ratios are printed.
Target: workers <= 1.10 x bare. Run: python benchmarks/overhead.py [--task pid-synergy] [--module concat]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def bare_loop(task_dir: Path, code: str, epochs: int, batch_size: int, threads: int, seed: int = 0) -> float:
    """Seconds for the protocol's training written plainly: AdamW, shuffled batches, val+test logits."""
    from autofusion.tasks.format import load_task

    torch.set_num_threads(threads)
    task = load_task(task_dir)
    ns: dict = {}
    exec(compile(code, "candidate.py", "exec"), ns)
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = ns["FusionModel"](dict(task.spec.modalities), task.spec.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    train = task.splits["train"]
    x, y = train.inputs(), train.labels
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(train.n, generator=gen)
        for start in range(0, train.n, batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(**{k: v[idx] for k, v in x.items()}), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        model.eval()
        with torch.no_grad():
            for split in ("val", "test"):
                inputs = task.splits[split].inputs()
                n = task.splits[split].n
                for s in range(0, n, 512):
                    model(**{k: v[s:s + 512] for k, v in inputs.items()})
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="pid-synergy")
    parser.add_argument("--module", default="concat", help="zoo member to train")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15, help="bare/workers pairs (the evaluate command runs 3 times)")
    args = parser.parse_args()

    from autofusion.evaluation.executors import LocalExecutor
    from autofusion.evaluation.protocol import TrainSettings
    from autofusion.tasks.builtin import resolve_task
    from autofusion.zoo import zoo_source

    task_dir = resolve_task(args.task)
    code = zoo_source(args.module)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, threads=args.threads, patience=0)
    print(f"task {args.task}, module {args.module}, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.threads} thread(s), {args.repeats} repeats; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    executor = LocalExecutor.start(task_dir, workers=1)
    executor.run(code, settings)  # warm-up: page cache, first fork
    bare_loop(task_dir, code, args.epochs, args.batch_size, args.threads)  # warm-up: lazy inits of this process

    def workers() -> float:
        started = time.perf_counter()
        result = executor.run(code, settings)
        assert result.ok and result.epochs_run == args.epochs, result.error
        return time.perf_counter() - started

    times: dict[str, list[float]] = {"bare": [], "workers": [], "evaluate": []}
    ratios = []
    for i in range(args.repeats):  # back-to-back pairs, alternating which goes first: load drifts hit both
        order = ("bare", "workers") if i % 2 == 0 else ("workers", "bare")
        pair = {name: bare_loop(task_dir, code, args.epochs, args.batch_size, args.threads) if name == "bare" else workers()
                for name in order}
        for name, seconds in pair.items():
            times[name].append(seconds)
        ratios.append(pair["workers"] / pair["bare"])
    executor.shutdown()
    with tempfile.TemporaryDirectory() as tmp:  # after the pairs: its start-up would disturb them
        path = Path(tmp) / f"{args.module}.py"
        path.write_text(code)
        cmd = [sys.executable, "-m", "autofusion.cli", "evaluate", str(path), "--task", str(task_dir), "--epochs",
               str(args.epochs), "--threads", str(args.threads), "--json"]
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times["evaluate"].append(time.perf_counter() - started)
    bare = statistics.median(times["bare"])
    print(f"{'path':<10} {'median s':>9} {'min s':>8} {'x bare':>7}  per-repeat seconds")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<10} {med:9.3f} {min(values):8.3f} {med / bare:7.2f}  {' '.join(f'{v:.2f}' for v in values)}")
    ratio = statistics.median(times["workers"]) / bare
    print(f"search workers overhead: {100 * (ratio - 1):+.1f}% over the bare loop (ratio of medians; "
          f"median of the {len(ratios)} pairwise ratios {100 * (statistics.median(ratios) - 1):+.1f}%; target <= +10%)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
