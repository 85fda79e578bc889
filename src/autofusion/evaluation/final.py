"""Full training of one candidate file: cosine schedule with warm-up, best-val checkpoint, several seeds.

`train_full()` runs the candidate in the sandbox like any evaluation (the trusted side never executes
candidate code), once per seed, and asks the child to export its weights: they come back as validated
wire frames (`evaluation/weights.py`), the evaluator keeps those of the best-val epoch, and they are
saved here with safetensors next to a copy of the code, the curves and the scores. Test accuracy is
reported as mean ± std over seeds; selection (the checkpoint) uses val only. `final_train_run()` does
this for a finished search's winner and its best zoo members and records the results in the run store
(evaluations with purpose "full") and in summary.json. This file does not choose the winner.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from autofusion.evaluation.protocol import EvalResult, TrainSettings

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 30  # full training: long enough for the cosine schedule to anneal on small tasks
PURPOSE = "full"  # evaluations.purpose of full trainings in the run store


def full_settings(base: TrainSettings, epochs: int, warmup_epochs: int | None = None) -> TrainSettings:
    """`base` with a cosine schedule, warm-up (a tenth of the epochs, at least 1), no early stop,
    and a timeout scaled with the number of epochs."""
    warmup = warmup_epochs if warmup_epochs is not None else (max(1, epochs // 10) if epochs > 1 else 0)
    timeout = base.timeout_s * max(1.0, epochs / base.epochs)
    return base.with_(epochs=epochs, schedule="cosine", warmup_epochs=warmup, patience=0, timeout_s=timeout)


@dataclass(frozen=True)
class SeedRun:
    seed: int
    result: EvalResult
    weights_file: str | None  # relative to the model's directory; None when the training failed


@dataclass(frozen=True)
class FullTraining:
    """The full training of one model over seeds, and where its files are."""

    name: str
    directory: Path
    runs: tuple[SeedRun, ...]

    def stats(self) -> dict[str, Any]:
        ok = [r for r in self.runs if r.result.ok]
        val_mean, val_std = mean_std([r.result.val_accuracy for r in ok])
        test_mean, test_std = mean_std([r.result.test_accuracy for r in ok])
        best = max(ok, key=lambda r: (r.result.val_accuracy, -r.seed), default=None)
        first = self.runs[0].result if self.runs else None
        return {
            "name": self.name, "directory": str(self.directory), "n_seeds": len(ok), "n_failed": len(self.runs) - len(ok),
            "val_accuracy": val_mean, "val_accuracy_std": val_std,
            "test_accuracy": test_mean, "test_accuracy_std": test_std,
            "params": first.params if first else None, "flops": first.flops if first else None,
            "best_seed": best.seed if best else None, "best_weights": best.weights_file if best else None,
            "settings": first.settings.to_dict() if first else None,
            "seeds": [{"seed": r.seed, "status": r.result.status.value, "val_accuracy": r.result.val_accuracy,
                       "test_accuracy": r.result.test_accuracy, "best_epoch": r.result.best_epoch,
                       "epochs_run": r.result.epochs_run, "train_seconds": round(r.result.train_seconds, 3),
                       "weights": r.weights_file, "error": r.result.error, "stage": r.result.stage,
                       "curves": r.result.to_json()["curves"]} for r in self.runs],
        }


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value); None for no values."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
    return mean, math.sqrt(var)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "model"


def train_full(evaluator: Any, code: str, name: str, settings: TrainSettings, seeds: Sequence[int], out_dir: Path,
               on_seed: Callable[[SeedRun], None] | None = None) -> FullTraining:
    """Train `code` once per seed through `evaluator.evaluate_with_weights`; write the files."""
    from safetensors.torch import save_file

    directory = Path(out_dir) / slug(name)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / "model.py", code)
    runs = []
    for seed in seeds:
        result, state = evaluator.evaluate_with_weights(code, settings.with_(seed=seed))
        weights_file = None
        if result.ok and state is not None:
            weights_file = f"seed{seed}.safetensors"
            meta = {"name": name, "seed": str(seed), "best_epoch": str(result.best_epoch),
                    "val_accuracy": repr(result.val_accuracy), "test_accuracy": repr(result.test_accuracy),
                    "settings": json.dumps(result.settings.to_dict())}
            tmp = directory / (weights_file + ".tmp")
            save_file(state, str(tmp), metadata=meta)
            os.replace(tmp, directory / weights_file)
        run = SeedRun(seed=seed, result=result, weights_file=weights_file)
        runs.append(run)
        log.info("full training of %s, seed %d: %s val %s test %s", name, seed, result.status.value,
                 result.val_accuracy, result.test_accuracy)
        if on_seed is not None:
            on_seed(run)
    done = FullTraining(name=name, directory=directory, runs=tuple(runs))
    _atomic_write(directory / "result.json", json.dumps(done.stats(), indent=2) + "\n")
    _write_curves_csv(done, directory / "curves.csv")
    return done


def _write_curves_csv(done: FullTraining, path: Path) -> None:
    lines = ["seed,epoch,train_loss,val_accuracy,epoch_seconds"]
    for run in done.runs:
        c = run.result.curves
        for epoch, val in enumerate(c.val_accuracy):
            loss = c.train_loss[epoch] if epoch < len(c.train_loss) else float("nan")
            secs = c.epoch_seconds[epoch] if epoch < len(c.epoch_seconds) else float("nan")
            lines.append(f"{run.seed},{epoch},{loss!r},{val!r},{secs!r}")
    _atomic_write(path, "\n".join(lines) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ after a search


def final_train_run(store: Any, run_dir: Path, evaluator: Any, summary: dict[str, Any], base: TrainSettings,
                    seeds: Sequence[int], epochs: int = DEFAULT_EPOCHS, n_zoo: int = 2) -> dict[str, Any]:
    """Fully train the winner and the `n_zoo` best zoo members (by mean val) of a finished search.

    Every seed's result goes into the store (purpose "full"); the files go to `run_dir/final_train/`;
    returns the `summary["final_train"]` entry (name -> stats, with the candidate id)."""
    settings = full_settings(base, epochs)
    out: dict[str, Any] = {}
    for cid, name in _models_to_train(store, summary, n_zoo):
        row = store.candidate(cid)

        def record(run: SeedRun, cid: int = cid) -> None:
            with store.transaction():
                store.add_evaluation(cid, PURPOSE, run.result)

        done = train_full(evaluator, row.code, name, settings, seeds, run_dir / "final_train", on_seed=record)
        stats = done.stats()
        stats["candidate_id"] = cid
        stats["directory"] = str(done.directory.relative_to(run_dir))
        out[name] = {k: v for k, v in stats.items() if k != "seeds"} | {
            "seeds": [{k: v for k, v in s.items() if k != "curves"} for s in stats["seeds"]]}
    return out


def _models_to_train(store: Any, summary: dict[str, Any], n_zoo: int) -> list[tuple[int, str]]:
    best = summary.get("best") or {}
    models: list[tuple[int, str]] = []
    if best.get("id") is not None:
        models.append((int(best["id"]), f"winner-{best['id']}"))
    ranked = sorted(((s.get("val_accuracy") or -1.0, name) for name, s in (summary.get("baselines") or {}).items()),
                    reverse=True)
    for _, name in ranked:
        if len(models) >= 1 + n_zoo:
            break
        row = next(iter(store.candidates("origin = ?", (f"zoo:{name}",))), None)
        if row is not None and row.id not in [m[0] for m in models]:
            models.append((row.id, f"zoo-{name}"))
    return models


def final_train_after_search(search: Any, summary: dict[str, Any], epochs: int | None, n_zoo: int) -> dict[str, Any]:
    """`autofusion search --final-train`: full training after `search.run()` in a fresh local sandbox on
    the run's task (whatever executor the search used); rewrites the report and summary.json (still
    last) with `summary["final_train"]`."""
    from autofusion.evaluation.evaluator import Budgets, ProxyEvaluator
    from autofusion.report import write_report
    from autofusion.sandbox.pool import Sandbox

    if not summary.get("best"):
        return summary
    config = search.config
    task_dir = search.store.get_meta("task_dir")
    base = config.train if config.train.threads else config.train.with_(threads=os.cpu_count() or 1)
    seeds = [config.seed + i for i in range(max(1, config.final_seeds))]
    sandbox = Sandbox(task_dir, allow_weak=bool(getattr(config, "allow_weak_sandbox", False)))
    try:
        evaluator = ProxyEvaluator(task_dir, sandbox=sandbox, budgets=Budgets(config.max_params, config.max_flops),
                                   static_policy=config.static_policy)
        summary = dict(summary)
        summary["final_train"] = final_train_run(search.store, search.run_dir, evaluator, summary, base, seeds,
                                                 epochs=epochs or DEFAULT_EPOCHS, n_zoo=n_zoo)
    finally:
        sandbox.close()
    try:
        write_report(search.run_dir, store=search.store, summary=summary)
    except Exception as exc:  # noqa: BLE001 - as in outputs.py: a report failure must not cost the summary
        log.error("could not write the report: %s", exc)
        summary["report_error"] = str(exc)
    _atomic_write(search.run_dir / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary
