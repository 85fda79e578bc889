"""`autofusion search`: flags and config file -> components -> `Search.run()` -> run directory.

Builds every component from its name (controller, generator, executor), owns the progress display
(a rich progress bar and one line per finished candidate on a terminal; quiet otherwise), and turns
Ctrl-C or SIGTERM into a clean stop: running evaluations are killed, the store stays consistent,
a partial summary is written and the run can be resumed with `--resume`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from autofusion.config import CONTROLLERS, GENERATORS, SearchConfig, load_config
from autofusion.errors import ConfigError

FLAG_TO_KEY = {
    "task": "task", "budget": "budget", "controller": "controller", "generator": "generator", "seed": "seed",
    "out": "out", "workers": "workers", "max_params": "max_params", "max_flops": "max_flops",
    "final_seeds": "final_seeds", "top_k": "final_top_k", "epochs": "train.epochs", "timeout": "train.timeout_s",
    "threads": "train.threads", "provider": "llm.provider", "model": "llm.model", "base_url": "llm.base_url",
    "temperature": "llm.temperature", "max_llm_calls": "llm.max_llm_calls", "max_llm_tokens": "llm.max_llm_tokens",
    "llm_ratio": "mixed_llm_ratio", "executor": "executor", "ray_address": "ray_address",
    "recycle_after": "recycle_after_jobs", "fidelity": "fidelity.mode", "eta": "fidelity.eta",
    "min_epochs": "fidelity.min_epochs", "min_data_fraction": "fidelity.min_data_fraction",
}
# Settings that change how the work is run, not what it computes: a resumed run may change them.
RESUMABLE = ("workers", "budget", "executor", "ray_address", "recycle_after_jobs")


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", help="built-in task name or feature-task directory (default: pid-synergy3, the demo)")
    p.add_argument("--budget", type=int, help="candidates the search generates (zoo baselines not counted)")
    p.add_argument("--controller", choices=CONTROLLERS)
    p.add_argument("--generator", choices=GENERATORS)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run directory (default: runs/<task>-<timestamp>)")
    p.add_argument("--epochs", type=int, help="proxy-training epochs per candidate")
    p.add_argument("--timeout", type=float, help="wall-clock seconds per evaluation")
    p.add_argument("--threads", type=int, help="torch threads per evaluation (default 1; raise it for large inputs)")
    p.add_argument("--workers", type=int, help="evaluations in parallel (default 1)")
    p.add_argument("--executor", choices=("local", "ray"), help="where evaluations run (ray: pip install autofusion[ray])")
    p.add_argument("--ray-address", dest="ray_address", help="Ray cluster to join (default: start a local Ray)")
    p.add_argument("--recycle-after", type=int, dest="recycle_after", help="restart each evaluation worker after N jobs")
    p.add_argument("--fidelity", choices=("off", "asha"), help="successive halving over epochs / data (default off)")
    p.add_argument("--eta", type=int, help="ASHA: promote the top 1/eta of each rung (default 3)")
    p.add_argument("--min-epochs", type=int, dest="min_epochs", help="ASHA: epochs at the first rung (default 2)")
    p.add_argument("--min-data-fraction", type=float, dest="min_data_fraction",
                   help="ASHA: train-split fraction at the first rung (default 1.0)")
    p.add_argument("--max-params", type=int, dest="max_params")
    p.add_argument("--max-flops", type=int, dest="max_flops")
    p.add_argument("--final-seeds", type=int, dest="final_seeds", help="seeds for the final comparison")
    p.add_argument("--top-k", type=int, dest="top_k", help="search candidates re-trained over seeds at the end")
    p.add_argument("--no-zoo-seed", action="store_true", help="do not start the population from the zoo")
    p.add_argument("--no-static-policy", action="store_true", help="switch the static gate off (sandbox testing)")
    p.add_argument("--allow-weak-sandbox", action="store_true", dest="allow_weak_sandbox",
                   help="run candidates even if some sandbox layers are unavailable on this host (see SECURITY.md)")
    p.add_argument("--config", help="TOML or YAML file with any of these settings (flags override it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--provider", choices=("openai", "gemini", "anthropic"), help="LLM provider (--generator llm|mixed)")
    p.add_argument("--model", help="LLM model name")
    p.add_argument("--base-url", dest="base_url", help="OpenAI-compatible server URL (vLLM, Ollama, ...)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--max-llm-calls", type=int, dest="max_llm_calls")
    p.add_argument("--max-llm-tokens", type=int, dest="max_llm_tokens")
    p.add_argument("--llm-ratio", type=float, dest="llm_ratio", help="share of LLM proposals with --generator mixed")
    p.add_argument("--json", action="store_true", help="print summary.json to stdout at the end")
    p.add_argument("--final-train", action="store_true", dest="final_train",
                   help="at the end, fully train the winner and the best zoo members (weights in final_train/)")
    p.add_argument("--final-epochs", type=int, dest="final_epochs", help="epochs of that full training (default 30)")
    p.add_argument("--final-zoo", type=int, default=2, dest="final_zoo", help="zoo members fully trained (default 2)")


def resolve_config(args: argparse.Namespace) -> tuple[SearchConfig, Path, bool]:
    """The run's config, its directory, and whether this is a resume."""
    overrides = {key: getattr(args, flag) for flag, key in FLAG_TO_KEY.items() if getattr(args, flag, None) is not None}
    if args.no_zoo_seed:
        overrides["seed_with_zoo"] = False
    if args.no_static_policy:
        overrides["static_policy"] = False
    if args.allow_weak_sandbox:
        overrides["allow_weak_sandbox"] = True
    if args.resume:
        return _resume_config(Path(args.resume), overrides, args)
    config = load_config(args.config) if args.config else SearchConfig()
    config = config.merged(overrides)
    if config.train.threads == 0:
        # One torch thread per evaluation: small fusion modules gain nothing from intra-op threads,
        # and oversubscribed OpenMP threads made an epoch 13x slower on a busy 2-core machine
        # (early_transformer on pid-synergy: 2.8 s with 1 thread, 38 s with 2). Use --workers to
        # fill the cores, --threads for large inputs.
        config = config.merged({"train.threads": 1})
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.out or f"runs/{Path(config.task).name}-{stamp}")
    if (run_dir / "run.db").exists():
        raise ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out")
    return config.merged({"out": str(run_dir)}), run_dir, False


def _resume_config(run_dir: Path, overrides: dict[str, Any], args: argparse.Namespace) -> tuple[SearchConfig, Path, bool]:
    from autofusion.store import SQLiteStore

    if not (run_dir / "run.db").is_file():
        raise ConfigError(f"--resume {run_dir}: no run.db there; pass the directory of an earlier search")
    store = SQLiteStore(run_dir / "run.db")
    saved = store.get_meta("config")
    store.close()
    if saved is None:
        raise ConfigError(f"--resume {run_dir}: the run store holds no config (was it created by autofusion search?)")
    config = SearchConfig.from_dict(saved)
    changed = sorted(k for k, v in overrides.items() if k not in RESUMABLE and v != _get(config, k))
    if changed or args.config:
        raise ConfigError(f"--resume continues the run with its saved config; drop {', '.join(changed) or '--config'} "
                          "(only --workers, --budget, --executor, --ray-address and --recycle-after may change on resume)")
    return config.merged({k: v for k, v in overrides.items() if k in RESUMABLE}), run_dir, True


def _get(config: SearchConfig, key: str) -> Any:
    if key.startswith("train."):
        return getattr(config.train, key[6:])
    if key.startswith("llm."):
        return config.llm.get(key[4:])
    if key.startswith("fidelity."):
        return getattr(config.fidelity, key[9:])
    return getattr(config, key)


def run_search_command(args: argparse.Namespace) -> int:
    from autofusion.cli.build import build_search
    from autofusion.cli.progress import Progress

    config, run_dir, resumed = resolve_config(args)
    progress = Progress(total=config.budget, enabled=sys.stderr.isatty(), verbose=bool(getattr(args, "verbose", 0)))
    search = build_search(config, run_dir, resumed, on_event=progress.event)
    # Both signals stop cleanly, even where SIGINT was inherited as ignored (background jobs of a
    # non-interactive shell), where Python would otherwise never raise KeyboardInterrupt.
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with progress:
            summary = search.run()
            if getattr(args, "final_train", False):
                from autofusion.evaluation.final import final_train_after_search

                summary = final_train_after_search(search, summary, args.final_epochs, args.final_zoo)
    except KeyboardInterrupt:
        search.executor.shutdown(kill=True)
        summary = _partial_summary(search)
        print(f"autofusion: interrupted; the run is consistent. Continue with: autofusion search --resume {run_dir}", file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        search.executor.shutdown()
        search.store.close()
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    else:
        _print_outcome(summary, run_dir)
    return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _partial_summary(search: Any) -> dict[str, Any]:
    """Summary of what finished so far, marked incomplete (the final comparison has not run)."""
    from autofusion.outputs import build_summary

    best = search.history().best()
    winner = search.store.candidate(best.id) if best else None
    summary = build_summary(search.store, search.config, winner, search.wall_seconds(), "interrupted")
    summary["complete"] = False
    path = search.run_dir / "summary.json"
    tmp = path.with_name("summary.json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return summary


def _print_outcome(summary: dict[str, Any], run_dir: Path) -> None:
    best = summary.get("best")
    print(f"run directory: {run_dir}")
    if not best:
        print("no candidate finished training")
        return
    zoo = summary["baselines"].get(summary.get("best_zoo") or "", {})
    print(f"winner: #{best['id']} {best['origin']}  val {best['val_accuracy']:.4f} ± {best['val_accuracy_std'] or 0:.4f}  "
          f"test {best['test_accuracy']:.4f} ± {best['test_accuracy_std'] or 0:.4f}  ({best['n_seeds']} seed{'s' if best['n_seeds'] != 1 else ''})  "
          f"params {best['params']:,}")
    if zoo:
        print(f"best zoo member ({summary['best_zoo']}): val {zoo['val_accuracy']:.4f}  test {zoo['test_accuracy']:.4f}")
    print(f"best model: {run_dir / 'best_model.py'}   report: {run_dir / 'report.html'}")
