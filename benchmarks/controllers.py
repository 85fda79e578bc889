"""Controllers at equal budget: random search, regularized evolution and A2C, over seeds and tasks.

Every run is the real search (`Search` with the synthesizer, the static gate and the sandboxed proxy
evaluator; one sandbox shared per task). For each task and seed the hand-designed zoo is evaluated
once and copied into every controller's run, so all controllers start from the same population and
are compared with the same target. Reported per task and controller, mean ± std over seeds:
- the best val accuracy among the search's own candidates after k proposals (several k);
- the test accuracy of the run's winner (best of the top search candidate and the zoo, by val);
- how many proposals it took to reach the target, the best zoo member's val accuracy (runs that
  never reach it count as budget + 1 and are marked with ">=");
and each as a ratio against random search measured in the same invocation.

    python benchmarks/controllers.py --tasks pid-synergy,tokens-interaction --seeds 3 --budget 30 --epochs 4
    python benchmarks/controllers.py --first-seed 3 --seeds 2 ... --out more.json   # extend with seeds 3, 4
    python benchmarks/controllers.py --merge results.json more.json                 # one table for all seeds

Writes the table to stdout and every figure (per run too) as JSON (`--out`). This is a benchmark,
not a test: on 2 CPU cores a budget-20 run takes 1-2 minutes on the vector tasks (pid-*), about 5 on
tokens-interaction, plus a minute per task and seed for the zoo.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from autofusion.cli.build import make_controller, make_generator, zoo_population
from autofusion.config import CONTROLLERS, SearchConfig
from autofusion.controllers.objective import Objective
from autofusion.evaluation import ProxyEvaluator
from autofusion.evaluation.executors import LocalExecutor
from autofusion.evaluation.protocol import TrainSettings
from autofusion.sandbox.pool import Sandbox
from autofusion.search import Search
from autofusion.store import SQLiteStore
from autofusion.tasks.builtin import resolve_task
from autofusion.tasks.format import read_spec


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default="pid-synergy,tokens-interaction", help="comma-separated built-in names or dirs")
    p.add_argument("--controllers", default=",".join(CONTROLLERS), help="comma-separated; random is always included")
    p.add_argument("--seeds", type=int, default=3, help="seeds per task and controller")
    p.add_argument("--first-seed", type=int, default=0, help="seeds first..first+N-1 (to extend an earlier run)")
    p.add_argument("--budget", type=int, default=30, help="proposals per run")
    p.add_argument("--epochs", type=int, default=4, help="proxy-training epochs per candidate")
    p.add_argument("--checkpoints", default=None, help="budgets at which to report the best so far (default: B/3, 2B/3, B)")
    p.add_argument("--out", default="benchmarks/results/controllers.json")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="no runs: combine the runs of earlier result files")
    p.add_argument("--keep-runs", default=None, help="directory to keep the run directories in (default: discarded)")
    return p.parse_args(argv)


def make_search(config: SearchConfig, run_dir: Path, executor: LocalExecutor) -> Search:
    store = SQLiteStore(run_dir / "run.db")
    task_dir = resolve_task(config.task)
    spec = read_spec(task_dir)
    store.set_meta("config", config.to_dict())
    store.set_meta("task_name", spec.name)
    store.set_meta("task_dir", str(task_dir))
    return Search(config=config, spec=spec, store=store, controller=make_controller(config),
                  generator=make_generator(config, store), executor=executor, run_dir=run_dir,
                  zoo=zoo_population(config), reward=Objective.from_dict(config.objective).reward)


def evaluate_zoo(config: SearchConfig, run_dir: Path, executor: LocalExecutor) -> Path:
    """A store holding the zoo evaluated with this seed (copied into every controller's run)."""
    search = make_search(config, run_dir, executor)
    search.evaluate_zoo()
    search.store.close()
    return run_dir / "run.db"


def copy_store(source: Path, target_dir: Path) -> None:
    target_dir.mkdir(parents=True)
    src, dst = sqlite3.connect(source), sqlite3.connect(target_dir / "run.db")
    src.backup(dst)
    src.close()
    dst.close()


def run_metrics(run_dir: Path, checkpoints: list[int], budget: int, summary: dict[str, Any]) -> dict[str, Any]:
    db = sqlite3.connect(run_dir / "run.db")
    zoo = [v for v, in db.execute("SELECT val_accuracy FROM candidates WHERE proposal_index IS NULL AND status = 'ok'")]
    rows = db.execute("SELECT proposal_index, status, val_accuracy FROM candidates WHERE proposal_index IS NOT NULL"
                      " ORDER BY proposal_index").fetchall()
    db.close()
    target = max(zoo) if zoo else None
    best_at, best, reached = {}, None, None
    for index, status, val in rows:
        if status == "ok" and val is not None:
            best = val if best is None else max(best, val)
            if reached is None and target is not None and val >= target:
                reached = index + 1
        if index + 1 in checkpoints:
            best_at[index + 1] = best
    return {"best_val_at": best_at, "target": target, "evals_to_target": reached if reached else budget + 1,
            "reached_target": reached is not None, "winner_test_accuracy": (summary.get("best") or {}).get("test_accuracy"),
            "winner_is_zoo": summary.get("winner_is_zoo"), "n_rejected": summary.get("n_rejected"),
            "n_failed": summary.get("n_failed"), "wall_seconds": summary.get("wall_seconds")}


def run_task(task: str, controllers: list[str], args: argparse.Namespace, checkpoints: list[int], root: Path) -> list[dict[str, Any]]:
    task_dir = resolve_task(task)
    sandbox = Sandbox(task_dir)
    executor = LocalExecutor(ProxyEvaluator(task_dir, sandbox=sandbox), workers=1)
    results = []
    try:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            base = SearchConfig(task=str(task_dir), budget=args.budget, seed=seed, final_top_k=1, final_seeds=1,
                                train=TrainSettings(epochs=args.epochs, threads=1))
            zoo_db = evaluate_zoo(base, root / f"{task}-zoo-{seed}", executor)
            for name in controllers:
                config = SearchConfig.from_dict({**base.to_dict(), "controller": name})
                run_dir = root / f"{task}-{name}-{seed}"
                copy_store(zoo_db, run_dir)
                search = make_search(config, run_dir, executor)
                started = time.monotonic()
                summary = search.run()
                search.store.close()
                metrics = run_metrics(run_dir, checkpoints, args.budget, summary)
                results.append({"task": task, "controller": name, "seed": seed, **metrics})
                print(f"[{task}] {name:9s} seed {seed}: best val {metrics['best_val_at']} target {metrics['target']:.4f}"
                      f" reached at {metrics['evals_to_target']} ({time.monotonic() - started:.0f}s)", file=sys.stderr)
    finally:
        executor.shutdown()
        sandbox.close()
    return results


def run_all(args: argparse.Namespace, controllers: list[str], checkpoints: list[int]) -> list[dict[str, Any]]:
    root = Path(args.keep_runs) if args.keep_runs else Path(tempfile.mkdtemp(prefix="autofusion-bench-"))
    results: list[dict[str, Any]] = []
    try:
        for task in args.tasks.split(","):
            results += run_task(task, controllers, args, checkpoints, root)
    finally:
        if not args.keep_runs:
            shutil.rmtree(root, ignore_errors=True)
    return results


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(results: list[dict[str, Any]], checkpoints: list[int]) -> list[dict[str, Any]]:
    rows = []
    for task in dict.fromkeys(r["task"] for r in results):
        per = {c: [r for r in results if r["task"] == task and r["controller"] == c]
               for c in dict.fromkeys(r["controller"] for r in results if r["task"] == task)}
        ref: dict[str, float] = {}
        for name, runs in per.items():
            row: dict[str, Any] = {"task": task, "controller": name, "n_seeds": len(runs)}
            for k in checkpoints:
                row[f"best_val@{k}"] = _mean_std([r["best_val_at"].get(k) or 0.0 for r in runs])
            row["winner_test"] = _mean_std([r["winner_test_accuracy"] or 0.0 for r in runs])
            row["evals_to_target"] = _mean_std([float(r["evals_to_target"]) for r in runs])
            row["reached"] = sum(r["reached_target"] for r in runs)
            rows.append(row)
            if name == "random":
                ref = {key: value[0] for key, value in row.items() if isinstance(value, tuple)}
        for row in rows:
            if row["task"] == task and ref:
                row["ratio_vs_random"] = {key: (row[key][0] / ref[key] if ref[key] else None) for key in ref}
    return rows


def format_table(rows: list[dict[str, Any]], checkpoints: list[int], budget: int) -> str:
    head = ["task", "controller"] + [f"best val @{k}" for k in checkpoints] + ["winner test", "evals to zoo-best", "reached"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        ratio = row.get("ratio_vs_random", {})
        cells = [row["task"], row["controller"]]
        for key in [f"best_val@{k}" for k in checkpoints] + ["winner_test", "evals_to_target"]:
            mean, std = row[key]
            r = ratio.get(key)
            cells.append(f"{mean:.4f} ± {std:.4f} ({r:.3f}x)" if r is not None and key != "evals_to_target"
                         else f"{mean:.1f} ± {std:.1f} ({r:.2f}x)" if r is not None else f"{mean:.4f} ± {std:.4f}")
        cells.append(f"{row['reached']}/{row['n_seeds']}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"(x: ratio to random search in this run; evals-to-target counts {budget + 1} for a run that never "
                 "reached the best zoo member's val accuracy; mean ± std over seeds)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    controllers = ["random"] + [c for c in args.controllers.split(",") if c and c != "random"]
    checkpoints = sorted({int(k) for k in args.checkpoints.split(",")} if args.checkpoints else
                         {max(1, args.budget // 3), max(1, 2 * args.budget // 3), args.budget})
    started = time.monotonic()
    if args.merge:
        earlier = [json.loads(Path(f).read_text()) for f in args.merge]
        checkpoints, args.budget = earlier[0]["checkpoints"], earlier[0]["settings"]["budget"]
        if any(e["checkpoints"] != checkpoints or e["settings"]["budget"] != args.budget for e in earlier):
            raise SystemExit("--merge: the files were made with different --budget or --checkpoints")
        results = [{**r, "best_val_at": {int(k): v for k, v in r["best_val_at"].items()}}
                   for e in earlier for r in e["runs"]]
    else:
        results = run_all(args, controllers, checkpoints)
    rows = aggregate(results, checkpoints)
    table = format_table(rows, checkpoints, args.budget)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": "python benchmarks/controllers.py " + " ".join(argv or sys.argv[1:]),
                               "settings": vars(args), "checkpoints": checkpoints, "controllers": controllers,
                               "wall_seconds": round(time.monotonic() - started, 1), "table": rows,
                               "runs": results, "markdown": table}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
