"""`autofusion train` (full training of one candidate file) and `autofusion compare` (several runs).

Registered by `autofusion.cli` through `register_cli(subparsers)`. `train` runs the file in the
sandbox under `evaluation/final.py` (cosine schedule with warm-up, best-val checkpoint, several
seeds) and writes weights, curves and scores; `compare` writes one report across run directories.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from autofusion.errors import AutoFusionError


def register_cli(sub: Any) -> None:
    p = sub.add_parser("train", help="full training of a candidate file (cosine schedule, best-val checkpoint, seeds)")
    p.add_argument("file", help="a candidate .py file (best_model.py, a zoo member, your own)")
    p.add_argument("--task", required=True, help="built-in task name or feature-task directory")
    p.add_argument("--epochs", type=int, help="training epochs (default 30)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3): test accuracy as mean ± std")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0); seeds are seed, seed+1, ...")
    p.add_argument("--warmup-epochs", type=int, dest="warmup_epochs", help="linear warm-up (default: a tenth of the epochs)")
    p.add_argument("--out", help="output directory (default: trained/<file name>)")
    p.add_argument("--timeout", type=float, help="wall-clock seconds per seed (default scales with the epochs)")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--lr", type=float)
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="one report across several run directories (controllers, seeds)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", help="output directory (default: runs/compare-<timestamp>)")
    p.set_defaults(func=cmd_compare)


def cmd_train(args: argparse.Namespace) -> int:
    from autofusion.cli import _evaluator, _read_file
    from autofusion.evaluation.final import DEFAULT_EPOCHS, full_settings, train_full
    from autofusion.evaluation.protocol import TrainSettings

    if args.seeds < 1:
        raise AutoFusionError(f"--seeds {args.seeds}: pass 1 or more")
    code = _read_file(args.file)
    settings = _settings(args, TrainSettings)
    settings = full_settings(settings, args.epochs or DEFAULT_EPOCHS, args.warmup_epochs)
    if args.timeout is not None:
        settings = settings.with_(timeout_s=args.timeout)
    out = Path(args.out or Path("trained") / Path(args.file).stem)
    evaluator = _evaluator(args)
    try:
        done = train_full(evaluator, code, Path(args.file).stem, settings, range(args.seed, args.seed + args.seeds),
                          out, on_seed=None if args.json else _print_seed)
    finally:
        evaluator.close()
    stats = done.stats()
    if args.json:
        sys.stdout.write(json.dumps(stats, indent=2, default=str) + "\n")
    else:
        _print_stats(stats)
    return 0 if stats["n_failed"] == 0 else 1


def _settings(args: argparse.Namespace, cls: Any) -> Any:
    import os

    changes = {k: getattr(args, k) for k in ("batch_size", "lr", "threads") if getattr(args, k, None) is not None}
    settings = cls().with_(**changes)
    return settings if settings.threads else settings.with_(threads=os.cpu_count() or 1)


def _print_seed(run: Any) -> None:
    r = run.result
    if r.ok:
        print(f"seed {run.seed}: val {r.val_accuracy:.4f}  test {r.test_accuracy:.4f}  best epoch {r.best_epoch + 1}/"
              f"{r.epochs_run}  {r.train_seconds:.1f}s  -> {run.weights_file}", flush=True)
    else:
        print(f"seed {run.seed}: {r.status.value} at {r.stage}: {r.error}", flush=True)


def _print_stats(stats: dict[str, Any]) -> None:
    if stats["val_accuracy"] is None:
        print(f"{stats['name']}: no seed finished training")
        return
    print(f"{stats['name']}: test accuracy {stats['test_accuracy']:.4f} ± {stats['test_accuracy_std']:.4f} "
          f"(val {stats['val_accuracy']:.4f} ± {stats['val_accuracy_std']:.4f}) over {stats['n_seeds']} seed(s); "
          f"params {stats['params']:,}  FLOPs/sample {stats['flops']:,}")
    print(f"files: {stats['directory']}  (model.py, seed<k>.safetensors, curves.csv, result.json); "
          f"best val: seed {stats['best_seed']}")


def cmd_compare(args: argparse.Namespace) -> int:
    from autofusion.report.compare import write_comparison

    out = args.out or f"runs/compare-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    print(write_comparison(args.run_dirs, out))
    return 0
