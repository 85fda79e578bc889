"""Throughput: candidates per minute with 1 and 2 workers; multi-fidelity (ASHA) vs. full fidelity.

Part 1 (`--part workers`): the zoo's modules (real fusion modules of varied cost), each trained with
the full protocol, through `LocalExecutor` with 1 worker (all cores' threads to one job, and 1 thread)
and with 2 workers (cores split between them) — the same jobs, the same budget, in `--rounds` rounds
that run every configuration once in rotated order. Target on 2 cores: >= 1.7x.

Part 2 (`--part fidelity`): `autofusion search` on built-in tasks with `--fidelity off` and
`--fidelity asha` at the same budget and seed; wall time, training epochs spent, and the best search
candidate's val accuracy at full fidelity (its final re-training). This decides the default.

Run: python benchmarks/throughput.py [--part workers|fidelity|all] [--task pid-synergy]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def workers_part(task: str, epochs: int, repeat_zoo: int, modules: list[str], rounds: int) -> None:
    import statistics

    from autofusion.evaluation.executors import LocalExecutor, threads_per_worker
    from autofusion.evaluation.protocol import TrainSettings
    from autofusion.tasks.builtin import resolve_task
    from autofusion.zoo import zoo_source

    task_dir = resolve_task(task)
    jobs = [(name, seed) for seed in range(repeat_zoo) for name in modules]
    print(f"\n[workers] task {task}: {len(jobs)} evaluations ({len(modules)} zoo modules x {repeat_zoo} seeds), "
          f"{epochs} epochs each, {rounds} rounds; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    # (workers, threads): the project's default split of the cores, and 1 worker with 1 thread (the
    # same per-job compute as each of the 2 workers: parallel scaling without intra-op threading).
    configs = ((1, threads_per_worker(1)), (1, 1), (2, threads_per_worker(2)))
    executors = [LocalExecutor.start(task_dir, workers=workers) for workers, _ in configs]
    for executor in executors:  # warm-up
        executor.run(zoo_source("concat"), TrainSettings(epochs=1, threads=1))
    walls: list[list[float]] = [[] for _ in configs]
    failed = 0
    # Each round runs every configuration once on the same jobs, in a rotated order, so the drifts of
    # a shared machine's load hit all of them; the ratios are taken within a round.
    for r in range(rounds):
        for i in [(r + k) % len(configs) for k in range(len(configs))]:
            settings = TrainSettings(epochs=epochs, patience=0, threads=configs[i][1])
            started = time.perf_counter()
            futures = [executors[i].submit(zoo_source(name), settings.with_(seed=seed)) for name, seed in jobs]
            failed += sum(not f.result().ok for f in futures)
            walls[i].append(time.perf_counter() - started)
    for executor in executors:
        executor.shutdown()
    per_min = [[60 * len(jobs) / w for w in ws] for ws in walls]
    print(f"{'workers':>7} {'threads':>7} {'median wall s':>13} {'cand/min':>9} {'x 1 worker':>10}")
    for (workers, threads), ws, pm in zip(configs, walls, per_min):
        print(f"{workers:7d} {threads:7d} {statistics.median(ws):13.2f} {statistics.median(pm):9.1f} "
              f"{statistics.median(pm) / statistics.median(per_min[0]):10.2f}")
    vs_default = [b / a for a, b in zip(per_min[0], per_min[2])]
    vs_one = [b / a for a, b in zip(per_min[1], per_min[2])]
    print(f"2 workers vs 1, median of the {rounds} rounds' ratios: {statistics.median(vs_default):.2f}x against 1 worker "
          f"with the default threads ({min(vs_default):.2f}-{max(vs_default):.2f}), {statistics.median(vs_one):.2f}x against "
          f"1 worker x 1 thread ({min(vs_one):.2f}-{max(vs_one):.2f}); target >= 1.7x on 2 cores. "
          f"{failed} failed evaluations; load average after {os.getloadavg()[0]:.2f}")


def _search(task: str, mode: str, budget: int, seed: int, epochs: int, root: Path) -> dict:
    cfg = root / f"{task}-{mode}-{seed}.toml"
    cfg.write_text("\n".join([f'task = "{task}"', f"budget = {budget}", f"seed = {seed}", 'zoo = ["concat"]',
                              "final_top_k = 1", "final_seeds = 1", "workers = 1", "[train]", f"epochs = {epochs}",
                              "threads = 1", "[fidelity]", f'mode = "{mode}"']) + "\n")
    run = root / f"{task}-{mode}-{seed}"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autofusion.cli", "search", "--config", str(cfg), "--out", str(run)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    summary = json.loads((run / "summary.json").read_text())
    db = sqlite3.connect(run / "run.db")
    epochs_spent, search_s = db.execute("SELECT SUM(epochs_run), SUM(wall_seconds) FROM evaluations"
                                        " WHERE purpose IN ('rung', 'search')").fetchone()
    best_search = db.execute(  # the best search candidate's val at full fidelity (its final comparison run)
        "SELECT MAX(e.val_accuracy) FROM evaluations e JOIN candidates c ON c.id = e.candidate_id"
        " WHERE c.proposal_index IS NOT NULL AND e.status = 'ok' AND json_extract(e.fidelity, '$.epochs') = ?",
        (epochs,)).fetchone()[0]
    return {"wall": wall, "epochs": epochs_spent, "eval_s": search_s, "best_full_val": best_search,
            "winner_val": summary["best"]["val_accuracy"], "winner_test": summary["best"]["test_accuracy"]}


def fidelity_part(tasks: list[str], budget: int, seeds: int, epochs: int) -> None:
    print(f"\n[fidelity] budget {budget}, {epochs} epochs at full fidelity, ASHA eta 3 / first rung 2 epochs, "
          f"{seeds} seed(s); load average {os.getloadavg()[0]:.2f}")
    print(f"{'task':<20} {'seed':>4} {'mode':<5} {'wall s':>7} {'eval s':>7} {'epochs':>6} {'best full val':>13} "
          f"{'winner val':>10} {'winner test':>11}")
    totals: dict[str, list[float]] = {"off": [0.0, 0.0], "asha": [0.0, 0.0]}
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            for seed in range(seeds):
                for mode in ("off", "asha"):
                    r = _search(task, mode, budget, seed, epochs, Path(tmp))
                    totals[mode][0] += r["eval_s"]
                    totals[mode][1] += r["best_full_val"] or 0.0
                    print(f"{task:<20} {seed:4d} {mode:<5} {r['wall']:7.1f} {r['eval_s']:7.1f} {r['epochs']:6d} "
                          f"{r['best_full_val'] or float('nan'):13.4f} {r['winner_val']:10.4f} {r['winner_test']:11.4f}")
    n = len(tasks) * seeds
    print(f"ASHA / off: search evaluation time {totals['asha'][0] / totals['off'][0]:.2f}x; mean best full-fidelity val "
          f"{totals['asha'][1] / n:.4f} vs {totals['off'][1] / n:.4f}; load average after {os.getloadavg()[0]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("workers", "fidelity", "all"), default="all")
    parser.add_argument("--task", default="pid-synergy", help="task for the workers part")
    parser.add_argument("--fidelity-tasks", default="pid-synergy")
    parser.add_argument("--epochs", type=int, default=10, help="full-fidelity epochs in the fidelity part")
    parser.add_argument("--worker-epochs", type=int, default=3, help="epochs per job in the workers part")
    parser.add_argument("--modules", default="concat,late,gmu,film,lmf,tfn", help="zoo modules in the workers part")
    parser.add_argument("--repeat-zoo", type=int, default=2, help="seeds per zoo module in the workers part")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the workers part (every configuration once each)")
    parser.add_argument("--budget", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    if args.part in ("workers", "all"):
        workers_part(args.task, args.worker_epochs, args.repeat_zoo, args.modules.split(","), args.rounds)
    if args.part in ("fidelity", "all"):
        fidelity_part(args.fidelity_tasks.split(","), args.budget, args.seeds, args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
