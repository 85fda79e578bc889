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
    "llm_ratio": "mixed_llm_ratio",
}


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", help="built-in task name or feature-task directory (default: pid-synergy)")
    p.add_argument("--budget", type=int, help="candidates the search generates (zoo baselines not counted)")
    p.add_argument("--controller", choices=CONTROLLERS)
    p.add_argument("--generator", choices=GENERATORS)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run directory (default: runs/<task>-<timestamp>)")
    p.add_argument("--epochs", type=int, help="proxy-training epochs per candidate")
    p.add_argument("--timeout", type=float, help="wall-clock seconds per evaluation")
    p.add_argument("--threads", type=int, help="torch threads per evaluation (default: cores / workers)")
    p.add_argument("--workers", type=int, help="evaluations in parallel")
    p.add_argument("--max-params", type=int, dest="max_params")
    p.add_argument("--max-flops", type=int, dest="max_flops")
    p.add_argument("--final-seeds", type=int, dest="final_seeds", help="seeds for the final comparison")
    p.add_argument("--top-k", type=int, dest="top_k", help="search candidates re-trained over seeds at the end")
    p.add_argument("--no-zoo-seed", action="store_true", help="do not start the population from the zoo")
    p.add_argument("--no-static-policy", action="store_true", help="switch the static gate off (sandbox testing)")
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


def resolve_config(args: argparse.Namespace) -> tuple[SearchConfig, Path, bool]:
    """The run's config, its directory, and whether this is a resume."""
    overrides = {key: getattr(args, flag) for flag, key in FLAG_TO_KEY.items() if getattr(args, flag, None) is not None}
    if args.no_zoo_seed:
        overrides["seed_with_zoo"] = False
    if args.no_static_policy:
        overrides["static_policy"] = False
    if args.resume:
        return _resume_config(Path(args.resume), overrides, args)
    config = load_config(args.config) if args.config else SearchConfig()
    config = config.merged(overrides)
    from autofusion.evaluation.executors import threads_per_worker

    if config.train.threads == 0:
        config = config.merged({"train.threads": threads_per_worker(config.workers)})
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
    changed = sorted(k for k, v in overrides.items() if k not in ("workers", "budget") and v != _get(config, k))
    if changed or args.config:
        raise ConfigError(f"--resume continues the run with its saved config; drop {', '.join(changed) or '--config'} "
                          "(only --workers and --budget may change on resume)")
    return config.merged({k: v for k, v in overrides.items() if k in ("workers", "budget")}), run_dir, True


def _get(config: SearchConfig, key: str) -> Any:
    if key.startswith("train."):
        return getattr(config.train, key[6:])
    if key.startswith("llm."):
        return config.llm.get(key[4:])
    return getattr(config, key)


def run_search_command(args: argparse.Namespace) -> int:
    from autofusion.cli.build import build_search
    from autofusion.cli.progress import Progress

    config, run_dir, resumed = resolve_config(args)
    progress = Progress(total=config.budget, enabled=sys.stderr.isatty(), verbose=bool(getattr(args, "verbose", 0)))
    search = build_search(config, run_dir, resumed, on_event=progress.event)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with progress:
            summary = search.run()
    except KeyboardInterrupt:
        search.executor.shutdown(kill=True)
        summary = _partial_summary(search)
        print(f"autofusion: interrupted; the run is consistent. Continue with: autofusion search --resume {run_dir}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
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
          f"test {best['test_accuracy']:.4f} ± {best['test_accuracy_std'] or 0:.4f}  ({best['n_seeds']} seeds)  params {best['params']:,}")
    if zoo:
        print(f"best zoo member ({summary['best_zoo']}): val {zoo['val_accuracy']:.4f}  test {zoo['test_accuracy']:.4f}")
    print(f"best model: {run_dir / 'best_model.py'}   report: {run_dir / 'report.html'}")
