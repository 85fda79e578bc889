"""A fake run directory: a run store filled through the store's own API (no training), so the report
can be checked fast against values known in advance."""

from __future__ import annotations

import json
from pathlib import Path

from autofusion.config import SearchConfig
from autofusion.evaluation.protocol import Curves, EvalResult, Status, TrainSettings
from autofusion.outputs import build_summary
from autofusion.store import SQLiteStore

CODE = "import torch\n\n\nclass FusionModel(torch.nn.Module):\n    pass  # #{n}\n"


def _result(seed: int, val: float, test: float, params: int, flops: int, curves: bool = True,
            breakdown: dict | None = None, status: Status = Status.OK) -> EvalResult:
    ok = status is Status.OK
    return EvalResult(status, val if ok else None, test if ok else None, params, flops, train_seconds=1.0, wall_seconds=1.5,
                      best_epoch=1 if ok else None, epochs_run=2, settings=TrainSettings(epochs=2, seed=seed),
                      curves=Curves([0.9, 0.7], [val - 0.05, val], [0.5, 0.5]) if curves else Curves(),
                      breakdown=breakdown, error=None if ok else "boom", stage=None if ok else "train")


def make_fake_run(run_dir: Path, controller: str = "evolution", offset: float = 0.0) -> Path:
    """Two zoo members, four proposals (a lineage, a rejection, a failure), final seeds, LLM calls."""
    run_dir.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(run_dir / "run.db")
    config = SearchConfig(task="/tmp/fake-task", budget=4, controller=controller, seed=0, final_seeds=2, final_top_k=1)
    store.set_meta("config", config.to_dict())
    store.set_meta("task", {"name": "fake", "num_classes": 3, "metric": "accuracy",
                            "modalities": {"image": {"shape": [4, 8]}, "text": {"shape": [16]}}})
    store.set_meta("task_name", "fake")
    store.set_meta("command", ["autofusion", "search", "--task", "/tmp/fake task", "--budget", "4"])
    store.set_meta("version", "0.1.0")
    bd = lambda a, b: {"subject": {"nat": {"accuracy": a, "n": 10}, "soc": {"accuracy": b, "n": 12}}}  # noqa: E731
    zoo_a = store.add_candidate(origin="zoo:concat", code=CODE.format(n=1), code_hash="h1", gate="pass")
    zoo_b = store.add_candidate(origin="zoo:gmu", code=CODE.format(n=2), code_hash="h2", gate="pass")
    for cid, val, test, p, f in ((zoo_a, 0.50, 0.48, 1000, 2000), (zoo_b, 0.55, 0.52, 3000, 9000)):
        r = _result(0, val + offset, test, p, f, breakdown=bd(test, test - 0.1))
        store.add_evaluation(cid, "search", r)
        store.set_status(cid, "ok", result=r)
    p0 = store.add_candidate(origin="synth", code=CODE.format(n=3), code_hash="h3", proposal_index=0, parent_ids=(zoo_b,),
                             action={"operator": "mutate_small", "family": "gating"}, notes="gate tweak")
    store.add_candidate(origin="synth", code="x", code_hash="h4", proposal_index=1, parent_ids=(p0,),
                        action={"operator": "fresh", "family": None}, status="rejected", stage="gate", error="bad import")
    p2 = store.add_candidate(origin="llm:fake-model", code=CODE.format(n=5), code_hash="h5", proposal_index=2,
                             parent_ids=(p0, zoo_a), action={"operator": "crossover", "family": "attention"})
    p3 = store.add_candidate(origin="synth", code=CODE.format(n=6), code_hash="h6", proposal_index=3, parent_ids=(zoo_a,),
                             action={"operator": "mutate_large", "family": "tensor"})
    for cid, val, test, p, f in ((p0, 0.58, 0.50, 4000, 8000), (p2, 0.66, 0.61, 5000, 20000)):
        r = _result(0, val + offset, test, p, f, breakdown=bd(test + 0.05, test - 0.05))
        store.add_evaluation(cid, "search", r)
        store.set_status(cid, "ok", result=r)
    failed = _result(0, 0, 0, 7000, 7000, status=Status.FAILED, curves=False)
    store.add_evaluation(p3, "search", failed)
    store.set_status(p3, "failed", "train", "boom", failed)
    for cid, val, test in ((zoo_a, 0.46, 0.47), (zoo_b, 0.57, 0.50), (p2, 0.62, 0.63)):
        store.add_evaluation(cid, "final", _result(1, val + offset, test, 0, 0, curves=False, breakdown=bd(test, test)))
    store.record_llm_call(candidate_index=2, key="k1", provider="openai", model="fake-model", input_tokens=1200,
                          output_tokens=300, latency_s=2.0, cached=0, attempt=1, cost_usd=0.01)
    store.record_llm_call(candidate_index=2, key="k1", provider="openai", model="fake-model", input_tokens=1200,
                          output_tokens=300, latency_s=0.0, cached=1, attempt=1, cost_usd=0.0)
    winner = store.candidate(p2)
    summary = build_summary(store, config, winner, 12.5, None)
    from autofusion.report import write_report

    write_report(run_dir, store=store, summary=summary)
    (run_dir / "summary.json").write_text(json.dumps(summary, default=str))
    store.close()
    return run_dir

