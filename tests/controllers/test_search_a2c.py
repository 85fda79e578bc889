"""The A2C controller in the real search loop: it learns during a run, and an interrupted run resumes the
same agent (the CLI's resume path itself is tested with evolution in tests/search)."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from autofusion.cli import main
from autofusion.cli.build import make_controller, make_generator, zoo_population
from autofusion.config import SearchConfig, load_config
from autofusion.controllers.a2c import A2CController
from autofusion.controllers.base import Action, History, Record
from autofusion.controllers.objective import Objective
from autofusion.evaluation.executors import LocalExecutor
from autofusion.search import Search
from autofusion.store import SQLiteStore
from autofusion.tasks.format import read_spec

BUDGET = 4


def write_config(path: Path, task: Path, budget: int) -> Path:
    path.write_text("\n".join([
        f'task = "{task}"', f"budget = {budget}", 'controller = "a2c"', 'zoo = ["concat"]',
        "final_top_k = 0", "final_seeds = 1", "workers = 1", "seed = 3",
        "[controller_options]", "update_every = 1",
        "[objective]", 'kind = "penalized"', "params_weight = 0.01", "reference_params = 500",
        "[train]", "epochs = 1", "threads = 1", "timeout_s = 60",
    ]) + "\n")
    return path


def states(run: Path) -> list[dict]:
    db = sqlite3.connect(run / "run.db")
    return [json.loads(s) for s, in db.execute("SELECT state FROM controller_state WHERE name = 'a2c' ORDER BY id")]


class Interrupt(Exception):
    pass


def interrupt_after(n_candidates: int):  # type: ignore[no-untyped-def]
    def on_event(kind: str, payload: dict) -> None:
        if kind == "candidate" and payload["n_proposals"] >= n_candidates and not payload["row"].is_seed:
            raise Interrupt
    return on_event


def make_search(config: SearchConfig, run_dir: Path, evaluator, on_event) -> Search:  # type: ignore[no-untyped-def]
    """What `cli.build.build_search` assembles, over the tests' shared sandbox (a zygote start costs
    seconds); a second call on the same directory resumes the run."""
    store = SQLiteStore(run_dir / "run.db")
    store.set_meta("task_name", "tiny-xor")
    spec = read_spec(Path(config.task))
    return Search(config=config, spec=spec, store=store, controller=make_controller(config),
                  generator=make_generator(config, store), executor=LocalExecutor(evaluator, workers=1),
                  run_dir=run_dir, zoo=zoo_population(config), on_event=on_event,
                  reward=Objective.from_dict(config.objective).reward)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_task: Path, evaluator) -> Path:  # type: ignore[no-untyped-def]
    """A run interrupted after 2 of its 4 candidates (as by Ctrl-C), then resumed."""
    root = tmp_path_factory.mktemp("a2c")
    config = load_config(write_config(root / "a.toml", tiny_task, BUDGET)).merged({"out": str(root / "run")})
    search = make_search(config, root / "run", evaluator, interrupt_after(2))
    with pytest.raises(Interrupt):
        search.run()
    search.executor.shutdown()
    search.store.close()
    assert len(states(root / "run")) >= 2 and not (root / "run" / "summary.json").exists()
    resumed = make_search(config, root / "run", evaluator, lambda kind, payload: None)
    resumed.run()
    resumed.executor.shutdown()
    resumed.store.close()
    return root / "run"


def replay(run: Path) -> A2CController:
    """An uninterrupted agent fed the run's own results in order: it must propose what the run
    proposed, and end with the weights the resumed run saved."""
    config = SearchConfig.from_dict(json.loads((run / "config.json").read_text()))
    objective = Objective.from_dict(config.objective)
    agent = A2CController(seed=config.seed, objective=objective, **config.controller_options)
    store = SQLiteStore(run / "run.db")
    rows = store.candidates()
    records = [Record(id=r.id, origin=r.origin, status=r.status, val_accuracy=r.val_accuracy, params=r.params,
                      flops=r.flops, parent_ids=r.parent_ids, action=Action(**r.action) if r.action else None,
                      has_genome=r.genome is not None, is_seed=r.is_seed, reward=objective.reward(r), stage=r.stage)
               for r in rows]
    for i, row in enumerate(rows):
        if row.is_seed:
            continue
        before = History(records[:i], config.budget, row.proposal_index)
        proposal = agent.propose(before, random.Random(f"{config.seed}:{row.proposal_index}"))
        assert (proposal.action, proposal.parent_ids) == (records[i].action, row.parent_ids)
        agent.observe(records[i], History(records[: i + 1], config.budget, row.proposal_index + 1))
    store.close()
    return agent


def test_the_agent_updates_its_weights_during_the_run(run: Path) -> None:
    saved = states(run)
    assert saved[-1]["n_observed"] == BUDGET and saved[-1]["n_updates"] == BUDGET
    assert saved[0]["tensors"] != saved[-1]["tensors"]


def test_the_resumed_run_continues_the_same_agent_as_an_uninterrupted_one(run: Path) -> None:
    agent = replay(run)
    assert agent.n_observed == BUDGET
    assert agent.state_dict()["tensors"] == states(run)[-1]["tensors"]


def test_summary_holds_the_objective_and_pareto_fronts(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    assert summary["controller"] == "a2c" and summary["objective"]["kind"] == "penalized"
    db = sqlite3.connect(run / "run.db")
    ok = {cid: (acc, params, flops) for cid, acc, params, flops in
          db.execute("SELECT id, val_accuracy, params, flops FROM candidates WHERE status = 'ok'")}
    for cost, column in (("params", 1), ("flops", 2)):
        front = summary["pareto"][cost]
        assert front and all(p["id"] in ok for p in front)
        best = max(ok.values(), key=lambda v: (v[0], -v[column]))
        assert front[-1]["val_accuracy"] == best[0]  # the most accurate candidate ends every front
        assert [p[cost] for p in front] == sorted(p[cost] for p in front)


def test_an_unknown_objective_key_fails_before_the_run_directory_exists(tmp_path: Path, tiny_task: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'task = "{tiny_task}"\ncontroller = "a2c"\n[objective]\nkind = "accuracy"\nweight = 1\n')
    assert main(["search", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert "weight" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
