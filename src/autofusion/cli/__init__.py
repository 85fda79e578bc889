"""The `autofusion` command line: the only place where names become classes.

Exit codes: 0 success; 1 the candidate was rejected / failed / timed out; 2 bad usage or bad input
(an AutoFusionError, printed without a traceback); 130 interrupted (the run stays resumable).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from autofusion.errors import AutoFusionError

log = logging.getLogger("autofusion")


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _read_file(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise AutoFusionError(f"candidate file {path} does not exist; pass the path of a .py file defining FusionModel")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AutoFusionError(f"candidate file {path} is not UTF-8 text") from None


# ------------------------------------------------------------------------------------- tasks


def cmd_tasks(args: argparse.Namespace) -> int:
    from autofusion.tasks.builtin import list_builtin

    tasks = list_builtin()
    if args.json:
        _print_json(tasks)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Built-in tasks")
    for col in ("name", "kind", "modalities", "classes", "train/val/test", "description"):
        table.add_column(col, overflow="fold")
    for t in tasks:
        mods = ", ".join(f"{m} {list(d['shape'])}" for m, d in t["modalities"].items())
        sizes = "/".join(str(t["sizes"][s]) for s in ("train", "val", "test"))
        table.add_row(t["name"], t["kind"], mods, str(t["num_classes"]), sizes, t["description"])
    Console().print(table)
    return 0


# ------------------------------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    from autofusion.gate import check_source

    violations = check_source(_read_file(args.file))
    if args.json:
        _print_json({"file": args.file, "ok": not violations,
                     "violations": [{"line": v.line, "rule": v.rule, "message": v.message} for v in violations]})
    elif violations:
        for v in violations:
            print(f"{args.file}:{v}")
    else:
        print(f"{args.file}: ok")
    return 1 if violations else 0


# ---------------------------------------------------------------------------------- evaluate


def _train_settings(args: argparse.Namespace, base: Any = None) -> Any:
    from autofusion.evaluation.protocol import TrainSettings

    settings = base or TrainSettings()
    changes = {k: getattr(args, k) for k in ("epochs", "seed", "batch_size", "lr", "threads") if getattr(args, k, None) is not None}
    if getattr(args, "timeout", None) is not None:
        changes["timeout_s"] = args.timeout
    settings = settings.with_(**changes)
    return settings if settings.threads else settings.with_(threads=1)  # see cli/search.py on threads


def _evaluator(args: argparse.Namespace) -> Any:
    from autofusion.evaluation import Budgets, ProxyEvaluator
    from autofusion.tasks.builtin import resolve_task

    from autofusion.sandbox.pool import Sandbox

    task_dir = resolve_task(args.task)
    sandbox = Sandbox(task_dir, allow_weak=getattr(args, "allow_weak_sandbox", False))
    evaluator = ProxyEvaluator(task_dir, sandbox=sandbox, static_policy=not getattr(args, "no_static_policy", False),
                               budgets=Budgets(getattr(args, "max_params", None), getattr(args, "max_flops", None)),
                               owns_sandbox=True)
    return evaluator


def cmd_evaluate(args: argparse.Namespace) -> int:
    code = _read_file(args.file)
    evaluator = _evaluator(args)
    try:
        result = evaluator.evaluate(code, _train_settings(args))
    finally:
        evaluator.close()
    out = {k: v for k, v in result.to_json().items() if k in ("status", "val_accuracy", "test_accuracy", "params", "flops",
                                                              "train_seconds", "error", "stage", "best_epoch", "epochs_run")}
    out["breakdown"] = result.breakdown
    out["curves"] = result.to_json()["curves"]
    if args.json:
        _print_json(out)
    else:
        _print_result(args.file, out)
    return 0 if result.ok else 1


def _print_result(name: str, out: dict[str, Any]) -> None:
    if out["status"] != "ok":
        print(f"{name}: {out['status']} at {out.get('stage')}\n{out.get('error')}")
        return
    print(f"{name}: ok  val {out['val_accuracy']:.4f}  test {out['test_accuracy']:.4f}  params {out['params']:,}  "
          f"FLOPs/sample {out['flops']:,}  train {out['train_seconds']:.1f}s  best epoch {out['best_epoch']}")
    for field, table in (out.get("breakdown") or {}).items():
        cells = "  ".join(f"{k}: {v['accuracy']:.3f} (n={v['n']})" for k, v in table.items())
        print(f"  test accuracy by {field}: {cells}")


# --------------------------------------------------------------------------------- baselines


def cmd_baselines(args: argparse.Namespace) -> int:
    from autofusion.zoo import ZOO_NAMES, zoo_source

    names = args.only or list(ZOO_NAMES)
    evaluator = _evaluator(args)
    base = _train_settings(args)
    rows = {}
    try:
        for name in names:
            results = [evaluator.evaluate(zoo_source(name), base.with_(seed=base.seed + k)) for k in range(args.seeds)]
            rows[name] = _aggregate(results)
            if not args.json:
                print(_baseline_line(name, rows[name]), flush=True)
    finally:
        evaluator.close()
    if args.json:
        _print_json(rows)
    return 0


def _aggregate(results: list[Any]) -> dict[str, Any]:
    from autofusion.outputs import _mean_std

    ok = [r for r in results if r.ok]
    val, val_std = _mean_std([r.val_accuracy for r in ok])
    test, test_std = _mean_std([r.test_accuracy for r in ok])
    first = results[0]
    return {"status": "ok" if len(ok) == len(results) else first.status.value, "val_accuracy": val, "val_accuracy_std": val_std,
            "test_accuracy": test, "test_accuracy_std": test_std, "n_seeds": len(ok), "params": first.params,
            "flops": first.flops, "train_seconds": sum(r.train_seconds for r in results) / len(results),
            "error": next((r.error for r in results if not r.ok), None)}


def _baseline_line(name: str, row: dict[str, Any]) -> str:
    if row["val_accuracy"] is None:
        return f"{name:18s} {row['status']}: {row['error']}"
    return (f"{name:18s} val {row['val_accuracy']:.4f} ± {row['val_accuracy_std']:.4f}  test {row['test_accuracy']:.4f} ± "
            f"{row['test_accuracy_std']:.4f}  params {row['params']:>9,}  FLOPs {row['flops']:>12,}  {row['train_seconds']:.1f}s")


# ------------------------------------------------------------------------------------ search


def cmd_search(args: argparse.Namespace) -> int:
    from autofusion.cli.search import run_search_command

    return run_search_command(args)


def cmd_report(args: argparse.Namespace) -> int:
    from autofusion.report import write_report
    from autofusion.store import SQLiteStore

    run_dir = Path(args.run_dir)
    if not (run_dir / "run.db").is_file():
        raise AutoFusionError(f"{run_dir} is not a run directory (no run.db); pass the --out directory of a search")
    if not (run_dir / "summary.json").is_file():
        raise AutoFusionError(f"{run_dir} has no summary.json: the run did not finish; resume it with `autofusion search --resume {run_dir}`")
    path = write_report(run_dir, store=SQLiteStore(run_dir / "run.db"))
    print(path)
    return 0


# ------------------------------------------------------------------------------------ parser


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, help="proxy-training epochs (default 10)")
    p.add_argument("--seed", type=int, help="seed for init, shuffling and dropout (default 0)")
    p.add_argument("--timeout", type=float, help="wall-clock seconds per evaluation (default 300)")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--lr", type=float)
    p.add_argument("--threads", type=int, help="torch threads per evaluation (default 1; raise it for large inputs)")
    p.add_argument("--max-params", type=int, dest="max_params", help="reject candidates with more parameters")
    p.add_argument("--max-flops", type=int, dest="max_flops", help="reject candidates with more FLOPs per sample")
    p.add_argument("--no-static-policy", action="store_true", dest="no_static_policy",
                   help="switch the static gate off (testing the runtime sandbox alone)")
    p.add_argument("--allow-weak-sandbox", action="store_true", dest="allow_weak_sandbox",
                   help="run candidates even if some sandbox layers are unavailable on this host (see SECURITY.md)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    from autofusion import __version__

    parser = argparse.ArgumentParser(prog="autofusion", description="Search for multimodal fusion architectures.")
    parser.add_argument("--version", action="version", version=f"autofusion {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tasks", help="list the built-in tasks")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("check", help="the static gate alone: ok or the violations with line numbers")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("evaluate", help="train and score one candidate file under the protocol")
    p.add_argument("file")
    p.add_argument("--task", required=True, help="built-in task name or feature-task directory")
    _add_train_flags(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("baselines", help="the hand-designed fusion zoo under the same protocol")
    p.add_argument("--task", required=True)
    p.add_argument("--seeds", type=int, default=1, help="seeds per zoo member (mean ± std)")
    p.add_argument("--only", nargs="+", help="only these zoo members")
    _add_train_flags(p)
    p.set_defaults(func=cmd_baselines)

    from autofusion.cli.search import add_search_arguments

    p = sub.add_parser("search", help="the main job: search for a fusion module (offline demo without arguments)")
    add_search_arguments(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("report", help="(re)write a run's report")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("prepare", help="turn a raw dataset into a feature-task directory")
    prep = p.add_subparsers(dest="dataset", required=True)
    try:
        from autofusion.tasks.scienceqa.cli import register_cli
    except ImportError as exc:  # the module itself is part of the package; its heavy deps are lazy
        log.debug("scienceqa preparation unavailable: %s", exc)
    else:
        register_cli(prep)
    _register_optional(sub)
    return parser


def _register_optional(sub: Any) -> None:
    """Subcommands contributed by other modules (final training, run comparison)."""
    try:
        from autofusion.report.cli import register_cli as register_report_cli
    except ImportError:
        return
    register_report_cli(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except AutoFusionError as exc:
        print(f"autofusion: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autofusion: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `autofusion check x.py | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return 141


if __name__ == "__main__":
    sys.exit(main())
