"""Factories: names in a config become controllers, generators, executors and a ready `Search`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from autofusion import __version__
from autofusion.config import SearchConfig
from autofusion.controllers.base import Controller
from autofusion.errors import ConfigError
from autofusion.generators.base import Generator
from autofusion.search import Event, Search
from autofusion.store import SQLiteStore
from autofusion.tasks.format import TaskSpec, read_spec

log = logging.getLogger(__name__)


def make_controller(config: SearchConfig) -> Controller:
    options = dict(config.controller_options)
    try:
        if config.controller == "random":
            from autofusion.controllers.random import RandomController

            return RandomController(**options)
        if config.controller == "evolution":
            from autofusion.controllers.evolution import EvolutionController

            return EvolutionController(**options)
        from autofusion.controllers.a2c import A2CController

        return A2CController(seed=config.seed, objective=config.objective, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"controller_options for {config.controller!r}: {exc}") from None


def make_generator(config: SearchConfig, store: SQLiteStore) -> Generator:
    from autofusion.generators.synth import SynthGenerator

    synth = SynthGenerator()
    if config.generator == "synth":
        return synth
    from autofusion.generators.llm import LLMGenerator, MixedGenerator, settings_from_dict
    from autofusion.llm.cache import LLMCache
    from autofusion.llm.calls import LLMAccounting
    from autofusion.llm.store_log import StoreCallLog

    if not config.llm.get("model") or not config.llm.get("provider"):
        raise ConfigError(f"--generator {config.generator} needs --provider and --model (or an [llm] table in --config)")
    settings = settings_from_dict(config.llm)
    # A resumed run carries its spending over, so --max-llm-calls / --max-llm-tokens hold across sessions.
    spent = store.db.execute("SELECT COUNT(*), COALESCE(SUM(error IS NOT NULL), 0), COALESCE(SUM(input_tokens), 0),"
                             " COALESCE(SUM(output_tokens), 0) FROM llm_calls WHERE cached = 0").fetchone()
    accounting = LLMAccounting(settings.price_per_mtok_in, settings.price_per_mtok_out, calls=spent[0],
                               failed_calls=spent[1], input_tokens=spent[2], output_tokens=spent[3])
    llm = LLMGenerator(settings, call_log=StoreCallLog(store), cache=LLMCache(), accounting=accounting)
    if config.generator == "llm":
        return llm
    return MixedGenerator(llm=llm, other=synth, llm_ratio=config.mixed_llm_ratio)


def zoo_population(config: SearchConfig) -> dict[str, tuple[str, dict[str, Any] | None]]:
    from autofusion.zoo import ZOO_NAMES, zoo_source

    try:
        from autofusion.generators.synth import preset_genome
    except ImportError:  # pragma: no cover - the synthesizer ships with the package
        preset_genome = None  # type: ignore[assignment]
    names = list(config.zoo) if config.zoo is not None else list(ZOO_NAMES)
    out = {}
    for name in names:
        genome = None
        if preset_genome is not None:
            try:
                genome = preset_genome(name)
            except Exception:  # noqa: BLE001 - a zoo member without a preset is still a baseline
                genome = None
        out[name] = (zoo_source(name), genome)
    return out


def make_executor(config: SearchConfig, task_dir: Path, spec: TaskSpec) -> Any:
    """`LocalExecutor` (one supervised zygote on this machine) or `RayExecutor` (actors in a cluster)."""
    from autofusion.evaluation import Budgets

    budgets = Budgets(config.max_params, config.max_flops)
    if config.executor == "ray":
        from autofusion.evaluation.ray_executor import RayExecutor

        return RayExecutor(task_dir, workers=config.workers, address=config.ray_address, budgets=budgets,
                           static_policy=config.static_policy, allow_weak=config.allow_weak_sandbox,
                           cpus_per_worker=max(1, config.train.threads), recycle_after_jobs=config.recycle_after_jobs)
    from autofusion.evaluation.executors import LocalExecutor

    return LocalExecutor.start(task_dir, workers=config.workers, budgets=budgets, static_policy=config.static_policy,
                               allow_weak=config.allow_weak_sandbox, recycle_after_jobs=config.recycle_after_jobs)


def build_search(config: SearchConfig, run_dir: Path, resumed: bool, on_event: Event) -> Search:
    from autofusion.controllers.objective import Objective
    from autofusion.tasks.builtin import resolve_task

    # A bad objective or controller option fails before the run directory exists.
    objective = Objective.from_dict(config.objective)
    controller = make_controller(config)
    task_dir = resolve_task(config.task)
    spec = read_spec(task_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(run_dir / "run.db")
    if not resumed:
        store.set_meta("config", config.to_dict())
        store.set_meta("version", __version__)
        store.set_meta("task_name", spec.name)
        store.set_meta("task_dir", str(task_dir))
        store.set_meta("task", spec.to_json())
        store.set_meta("command", ["autofusion", *sys.argv[1:]])
    generator = make_generator(config, store)
    executor = make_executor(config, task_dir, spec)
    return Search(config=config, spec=spec, store=store, controller=controller, generator=generator,
                  executor=executor, run_dir=run_dir, zoo=zoo_population(config), on_event=on_event,
                  reward=objective.reward)
