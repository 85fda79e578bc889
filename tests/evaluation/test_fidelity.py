"""Successive halving: the rung ladder, ASHA promotions derived from the store, a search that uses it,
and a crash in the middle of a multi-fidelity search that loses and repeats nothing."""

from __future__ import annotations

import hashlib
from concurrent.futures import Future
from pathlib import Path

import pytest

from autofusion.config import SearchConfig
from autofusion.controllers.evolution import EvolutionController
from autofusion.errors import ConfigError
from autofusion.evaluation.fidelity import FidelitySettings, SuccessiveHalving, make_rungs
from autofusion.evaluation.protocol import Curves, EvalResult, Status, TrainSettings
from autofusion.generators.synth import SynthGenerator
from autofusion.search import Search
from autofusion.store import SQLiteStore
from autofusion.tasks.format import read_spec

from helpers import CONCAT

ASHA = FidelitySettings(mode="asha", eta=3, min_epochs=2)
TRAIN = TrainSettings(epochs=10)


def test_rungs_grow_by_eta_and_end_at_the_full_protocol() -> None:
    assert [(r.epochs, r.data_fraction) for r in make_rungs(FidelitySettings(), TRAIN)] == [(10, 1.0)]
    assert [(r.epochs, r.data_fraction) for r in make_rungs(ASHA, TRAIN)] == [(2, 1.0), (6, 1.0), (10, 1.0)]
    both = FidelitySettings(mode="asha", eta=2, min_epochs=4, min_data_fraction=0.25)
    assert [(r.epochs, r.data_fraction) for r in make_rungs(both, TRAIN)] == [(4, 0.25), (8, 0.5), (10, 1.0)]
    assert make_rungs(ASHA, TRAIN)[1].apply(TRAIN.with_(warmup_epochs=3)).epochs == 6


def test_bad_or_unknown_rung_settings_are_errors() -> None:
    with pytest.raises(ConfigError, match="eta"):
        FidelitySettings(mode="asha", eta=1)
    with pytest.raises(ConfigError, match="min_epoch"):
        FidelitySettings.from_dict({"min_epoch": 2})
    with pytest.raises(ConfigError, match="fidelity"):
        SearchConfig.from_dict({"fidelity": {"mode": "hyperband"}})


def _ev(cid: int, epochs: int, val: float | None, seed: int = 0, purpose: str = "rung") -> dict:
    return {"candidate_id": cid, "purpose": purpose, "seed": seed, "fidelity": {"epochs": epochs, "data_fraction": 1.0},
            "status": "ok" if val is not None else "failed", "val_accuracy": val}


def test_promotes_the_top_third_highest_rung_first_and_never_twice() -> None:
    sh = SuccessiveHalving(ASHA, TRAIN, base_seed=0)
    evs = [_ev(1, 2, 0.5), _ev(2, 2, 0.9), _ev(3, 2, 0.7)]
    assert sh.next_promotion(evs[:2], {1, 2, 3}, busy=set()) is None  # fewer than eta results
    promo = sh.next_promotion(evs, {1, 2, 3}, busy=set())
    assert (promo.candidate_id, promo.rung.epochs) == (2, 6)
    assert sh.next_promotion(evs, {1, 2, 3}, busy={2}) is None  # already running at the next rung
    evs.append(_ev(2, 6, 0.92))
    assert sh.next_promotion(evs, {1, 2, 3}, busy=set()) is None  # one rung-1 result: nothing to rank yet
    evs += [_ev(4, 2, 0.95), _ev(5, 2, 0.1), _ev(6, 2, None), _ev(7, 2, 0.2)]
    assert sh.next_promotion(evs, {1, 2, 3, 4, 5, 6, 7}, busy=set()).candidate_id == 4  # 6 ok -> top 2
    evs += [_ev(4, 6, 0.91), _ev(8, 6, 0.99, seed=1), _ev(9, 6, 0.99, purpose="final")]
    promo = sh.next_promotion(evs, {1, 2, 3, 4, 5, 6, 7, 8, 9}, busy=set())
    assert promo is None  # rung 1 has 2 results (< eta); other seeds and purposes do not count
    assert sh.reached(evs, {1, 2, 3, 4}) == {1: (0, 0.5), 2: (1, 0.92), 3: (0, 0.7), 4: (1, 0.91)}


class FakeExecutor:
    """Scores code without training: a fixed quality per code, better with more epochs. Counts jobs;
    `crash_after` makes the n-th submission raise, as if the search process died there."""

    name = "fake"

    def __init__(self, workers: int = 1, crash_after: int | None = None) -> None:
        self.workers, self.crash_after, self.jobs = workers, crash_after, []

    def submit(self, code: str, settings: TrainSettings) -> Future:
        if self.crash_after is not None and len(self.jobs) >= self.crash_after:
            raise SystemExit("simulated crash")
        self.jobs.append((hashlib.sha256(code.encode()).hexdigest()[:8], settings.epochs, settings.seed))
        quality = int(hashlib.sha256(code.encode()).hexdigest()[:6], 16) / 0xFFFFFF
        val = round(0.5 + 0.4 * quality * (1 - 1 / (1 + settings.epochs)), 6)
        future: Future = Future()
        future.set_result(EvalResult(Status.OK, val_accuracy=val, test_accuracy=val, params=100, flops=1000,
                                     epochs_run=settings.epochs, best_epoch=settings.epochs - 1, settings=settings,
                                     curves=Curves([1.0] * settings.epochs, [val] * settings.epochs, [0.1] * settings.epochs)))
        return future

    def smoke(self, code: str, settings: TrainSettings) -> EvalResult:
        return EvalResult(Status.OK, settings=settings)

    def shutdown(self, kill: bool = False) -> None:
        pass


def _search(run: Path, task: Path, executor: FakeExecutor, budget: int = 12) -> Search:
    config = SearchConfig(task=str(task), budget=budget, final_top_k=2, final_seeds=2, out=str(run),
                          train=TrainSettings(epochs=10, threads=1), fidelity=ASHA)
    store = SQLiteStore(run / "run.db")
    store.set_meta("config", config.to_dict())
    return Search(config=config, spec=read_spec(task), store=store, controller=EvolutionController(),
                  generator=SynthGenerator(), executor=executor, run_dir=run, zoo={"concat": (CONCAT, None)})


def _search_evals(store: SQLiteStore) -> list[tuple]:
    rows = store.db.execute("SELECT c.proposal_index, e.fidelity, e.val_accuracy FROM evaluations e JOIN candidates c"
                            " ON c.id = e.candidate_id WHERE e.purpose IN ('rung', 'search') ORDER BY 1, 2").fetchall()
    return [tuple(r) for r in rows]


def test_asha_search_promotes_by_val_and_compares_finalists_at_full_fidelity(tmp_path: Path, tiny_task: Path) -> None:
    search = _search(tmp_path / "run", tiny_task, FakeExecutor())
    summary = search.run()
    store = search.store
    evs = store.evaluations()
    fid = [(e["fidelity"]["epochs"], e["purpose"]) for e in evs]
    n_trained = len(store.candidates("proposal_index IS NOT NULL AND gate = 'pass'"))
    assert fid.count((2, "rung")) == n_trained >= 9  # every proposal that passed the gate got the cheap rung
    assert n_trained // 3 <= fid.count((6, "rung")) < n_trained and 1 <= fid.count((10, "search")) < fid.count((6, "rung"))
    proposals = {r.id for r in store.candidates("proposal_index IS NOT NULL AND status = 'ok'")}
    rung0 = sorted(((e["val_accuracy"], e["candidate_id"]) for e in evs
                    if e["candidate_id"] in proposals and e["fidelity"]["epochs"] == 2), reverse=True)
    promoted = {e["candidate_id"] for e in evs if e["fidelity"]["epochs"] == 6}
    assert {cid for _, cid in rung0[: len(rung0) // 3]} <= promoted  # the top third at the end all went up
    # Every finalist, zoo included, has full-fidelity results for both seeds; nothing is trained twice.
    keys = [(e["candidate_id"], e["seed"], e["fidelity"]["epochs"]) for e in evs]
    assert len(keys) == len(set(keys))
    best = summary["best"]["id"]
    assert {(e["seed"]) for e in evs if e["candidate_id"] == best and e["fidelity"]["epochs"] == 10} == {0, 1}


def test_crash_mid_search_then_resume_loses_and_repeats_nothing(tmp_path: Path, tiny_task: Path) -> None:
    reference = _search(tmp_path / "ref", tiny_task, FakeExecutor())
    reference.run()
    crashed = _search(tmp_path / "run", tiny_task, FakeExecutor(crash_after=17))
    with pytest.raises(SystemExit):
        crashed.run()
    crashed.store.close()
    resumed = _search(tmp_path / "run", tiny_task, FakeExecutor())
    resumed.run()
    assert _search_evals(resumed.store) == _search_evals(reference.store)
