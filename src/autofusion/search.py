"""The search loop: controller -> bridge -> generator -> gate -> evaluator -> store -> controller.

`Search.run()` reads top to bottom: evaluate the zoo (baselines, and the seed population), spend the
budget on proposals (up to `workers` evaluations in flight; with multi-fidelity on, a free slot first
goes to the next promotion that `evaluation.fidelity` derives from the store), re-train the top
candidates and every zoo member over several seeds at full fidelity, choose the winner by mean val
accuracy, then write the run directory (`summary.json` last). Selection never looks at test accuracy.
Everything goes through the store first, so `Search(...).run()` on an existing run directory resumes
it: finished evaluations are reused, unfinished ones (and lost promotions) run again, proposals
continue from where they stopped.
"""

from __future__ import annotations

import logging
import math
import random
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from autofusion import bridge, gate
from autofusion.config import SearchConfig
from autofusion.controllers.base import Action, Controller, History, Record
from autofusion.evaluation.fidelity import Promotion, Rung, SuccessiveHalving
from autofusion.evaluation.protocol import EvalResult, Status, TrainSettings
from autofusion.generators.base import GenerationFailed, GenerationStopped, Generator, Parent
from autofusion.outputs import write_outputs
from autofusion.store import CandidateRow, SQLiteStore
from autofusion.tasks.format import TaskSpec

log = logging.getLogger(__name__)

Event = Callable[[str, dict[str, Any]], None]


@dataclass
class Search:
    config: SearchConfig
    spec: TaskSpec
    store: SQLiteStore
    controller: Controller
    generator: Generator
    executor: Any  # LocalExecutor or RayExecutor: submit(code, settings) -> Future[EvalResult]
    run_dir: Path
    zoo: dict[str, tuple[str, dict[str, Any] | None]]  # name -> (source, preset genome)
    on_event: Event = lambda kind, payload: None
    reward: Callable[[CandidateRow], float | None] = lambda row: row.val_accuracy
    in_flight: dict[Future, tuple[int, bool]] = field(default_factory=dict)  # future -> (candidate id, promotion?)
    stopped_reason: str | None = None
    started: float = field(default_factory=time.monotonic)
    previous_wall: float = 0.0  # wall time of earlier sessions of a resumed run
    rungs: SuccessiveHalving = field(init=False)

    def __post_init__(self) -> None:
        self.rungs = SuccessiveHalving(self.config.fidelity, self.config.train, self.config.seed)

    # ------------------------------------------------------------------------------- the loop

    def run(self) -> dict[str, Any]:
        self.previous_wall = float(self.store.get_meta("wall_seconds", 0.0))
        self.restore_controller()
        self.evaluate_zoo()
        self.resubmit_pending()
        while self.has_budget() or self.in_flight or self.next_promotion():
            while len(self.in_flight) < self.executor.workers and (promotion := self.next_promotion()):
                self.promote(promotion)
            while self.has_budget() and len(self.in_flight) < self.executor.workers:
                self.propose_next()
            self.collect(wait_for_one=True)
        winner = self.final_selection()
        return write_outputs(self.store, self.run_dir, self.config, winner, self.wall_seconds(), self.stopped_reason)

    def has_budget(self) -> bool:
        return self.stopped_reason is None and self.store.n_proposals() < self.config.budget

    def wall_seconds(self) -> float:
        return self.previous_wall + time.monotonic() - self.started

    # ---------------------------------------------------------------------------- zoo seeding

    def evaluate_zoo(self) -> None:
        for name, (source, genome) in self.zoo.items():
            row = next(iter(self.store.candidates("origin = ?", (f"zoo:{name}",))), None)
            if row is None:
                cid = self.store.add_candidate(origin=f"zoo:{name}", code=source, code_hash=gate.normalized_hash(source),
                                               genome=genome, notes="hand-designed baseline", gate="pass")
                row = self.store.candidate(cid)
            if row.status == "pending":
                self.submit(row.id, source, self.rungs.full)  # baselines: always the full protocol
                self.collect(wait_for_one=len(self.in_flight) >= self.executor.workers)
        while self.in_flight:
            self.collect(wait_for_one=True)

    def resubmit_pending(self) -> None:
        """After a crash: candidates whose evaluation never finished are evaluated again."""
        for row in self.store.candidates("status = 'pending' AND proposal_index IS NOT NULL"):
            self.submit(row.id, row.code)
            self.collect(wait_for_one=len(self.in_flight) >= self.executor.workers)

    # ------------------------------------------------------------------------------ proposals

    def propose_next(self) -> None:
        index = self.store.n_proposals()
        history = self.history()
        rng = random.Random(f"{self.config.seed}:{index}")
        proposal = self.controller.propose(history, rng)
        parents = tuple(self.parent(pid) for pid in proposal.parent_ids)
        request = bridge.to_request(proposal, parents, history, self.spec, seed=rng.randrange(2**31), index=index,
                                    budgets={"max_params": self.config.max_params, "max_flops": self.config.max_flops})
        action = proposal.action.to_dict()
        try:
            made = self.generator.generate(request, validate=self.validate)
        except GenerationStopped as stop:
            self.stopped_reason = str(stop)
            log.warning("generation stopped: %s", stop)
            return
        except GenerationFailed as exc:
            cid = self.store.add_candidate(origin=self.generator.name, code="", code_hash="", proposal_index=index,
                                           parent_ids=proposal.parent_ids, action=action, status=Status.FAILED.value,
                                           stage="generate", error=str(exc))
            self.finish(cid, None)
            return
        verdict = self.gate(made.code)
        cid = self.store.add_candidate(
            origin=made.origin, code=made.code, code_hash=gate.normalized_hash(made.code), proposal_index=index,
            parent_ids=proposal.parent_ids, action=action, genome=made.genome, notes=made.notes,
            gate=verdict or "pass", status="pending" if verdict is None else Status.REJECTED.value,
            stage=None if verdict is None else "gate", error=verdict)
        if verdict is None:
            self.submit(cid, made.code)
        else:
            self.finish(cid, None)

    def validate(self, code: str) -> str | None:
        """Generators may call this to repair or redraw their output before returning it: the gate,
        then (for LLM-written code, whose errors an LLM can repair) the smoke run in the sandbox."""
        problem = self.gate(code)
        if problem is None and self.config.generator != "synth":
            smoke = self.executor.smoke(code, self.settings())
            problem = None if smoke.ok else f"{smoke.stage}: {smoke.error}"
        return problem

    def gate(self, code: str) -> str | None:
        if self.config.static_policy:
            violations = gate.check_source(code)
            if violations:
                return "\n".join(map(str, violations))
        twin = self.store.find_by_hash(gate.normalized_hash(code))
        return None if twin is None else f"duplicate of candidate #{twin.id} (same code after normalisation)"

    def parent(self, candidate_id: int) -> Parent:
        row = self.store.candidate(candidate_id)
        return Parent(id=row.id, code=row.code, genome=row.genome, val_accuracy=row.val_accuracy,
                      params=row.params, flops=row.flops)

    # ---------------------------------------------------------------------------- evaluations

    def settings(self, seed_offset: int = 0) -> TrainSettings:
        return self.config.train.with_(seed=self.config.seed + seed_offset)

    def purpose(self, result: EvalResult) -> str:
        """"search" for the full protocol; "rung" for a cheaper ASHA rung, so that every reader of
        "search" evaluations (outputs, reports) keeps seeing full-fidelity results only."""
        full = result.settings.epochs == self.rungs.full.epochs and result.settings.data_fraction == self.rungs.full.data_fraction
        return "search" if full else "rung"

    def next_promotion(self) -> Promotion | None:
        if len(self.rungs.rungs) == 1:
            return None
        busy = {cid for cid, _promotion in self.in_flight.values()}
        proposals = {r.id for r in self.store.candidates("proposal_index IS NOT NULL AND status = 'ok'")}
        return self.rungs.next_promotion(self.store.evaluations(), proposals, busy)

    def promote(self, promotion: Promotion) -> None:
        self.submit(promotion.candidate_id, self.store.candidate(promotion.candidate_id).code, promotion.rung, True)

    def submit(self, candidate_id: int, code: str, rung: Rung | None = None, promotion: bool = False) -> None:
        settings = (rung or self.rungs.first).apply(self.settings())
        self.in_flight[self.executor.submit(code, settings)] = (candidate_id, promotion)

    def collect(self, wait_for_one: bool) -> None:
        if not self.in_flight:
            return
        done, _ = wait(list(self.in_flight), timeout=None if wait_for_one else 0, return_when=FIRST_COMPLETED)
        for future in done:
            cid, promotion = self.in_flight.pop(future)
            (self.finish_promotion if promotion else self.finish)(cid, future.result())

    def finish_promotion(self, candidate_id: int, result: EvalResult) -> None:
        """A higher rung's result: recorded; the candidate's row shows its highest rung if that went
        well (a failure there leaves the lower rung's result). The controller already saw it."""
        with self.store.transaction():
            self.store.add_evaluation(candidate_id, self.purpose(result), result)
            if result.ok:
                self.store.set_status(candidate_id, result.status.value, result.stage, result.error, result)
            self.store.set_meta("wall_seconds", self.wall_seconds())
        self.on_event("promotion", {"row": self.store.candidate(candidate_id), "result": result,
                                    "epochs": result.settings.epochs, "data_fraction": result.settings.data_fraction})

    def finish(self, candidate_id: int, result: EvalResult | None) -> None:
        """Record a finished candidate, tell the controller, save its state — in one transaction."""
        with self.store.transaction():
            if result is not None:
                self.store.add_evaluation(candidate_id, self.purpose(result), result)
                self.store.set_status(candidate_id, result.status.value, result.stage, result.error, result)
            row = self.store.candidate(candidate_id)
            history = self.history()  # read once: observe, the saved state and the event share it
            if not (row.is_seed and not self.config.seed_with_zoo):
                self.controller.observe(self.record(row), history)
            self.store.set_meta("wall_seconds", self.wall_seconds())
            state = self.controller.state_dict()
            if state:
                self.store.save_controller_state(self.controller.name, len(history), state)
        self.on_event("candidate", {"row": row, "result": result, "best": history.best(),
                                    "n_proposals": self.store.n_proposals()})

    def restore_controller(self) -> None:
        saved = self.store.latest_controller_state(self.controller.name)
        if saved is not None:
            self.controller.load_state_dict(saved[1])

    # ------------------------------------------------------------------------------- history

    def record(self, row: CandidateRow) -> Record:
        action = Action(**row.action) if row.action else None
        return Record(id=row.id, origin=row.origin, status=row.status, val_accuracy=row.val_accuracy,
                      params=row.params, flops=row.flops, parent_ids=row.parent_ids, action=action,
                      has_genome=row.genome is not None, is_seed=row.is_seed, reward=self.reward(row),
                      stage=row.stage)

    def history(self) -> History:
        rows = self.store.candidates("status != 'pending'")
        if not self.config.seed_with_zoo:
            rows = [r for r in rows if not r.is_seed]
        return History((self.record(r) for r in rows), self.config.budget, self.store.n_proposals())

    # ------------------------------------------------------------------------ final selection

    def final_selection(self) -> CandidateRow | None:
        """Re-train the top-k search candidates and every zoo member over seeds at full fidelity; best
        mean val wins (see `_best_by_mean_val`). Search candidates rank by the highest rung they reached, then val accuracy."""
        ok = [r for r in self.store.candidates("status = 'ok'")]
        reached = self.rungs.reached(self.store.evaluations(), {r.id for r in ok})
        top = sorted((r for r in ok if not r.is_seed and r.id in reached),
                     key=lambda r: (-reached[r.id][0], -reached[r.id][1], r.id))[: self.config.final_top_k]
        finalists = top + [r for r in ok if r.is_seed]
        self.on_event("phase", {"name": "final", "n_finalists": len(finalists), "n_seeds": self.config.final_seeds})
        jobs: dict[Future, tuple[int, int]] = {}
        for row in finalists:
            for offset in range(self.config.final_seeds):
                settings = self.settings(offset)  # the full protocol
                if not self.store.has_evaluation(row.id, "final", settings.seed, self.rungs.full.fidelity) and not (
                        offset == 0 and self.store.has_evaluation(row.id, "search", settings.seed, self.rungs.full.fidelity)):
                    jobs[self.executor.submit(row.code, settings)] = (row.id, settings.seed)
        while jobs:
            done, _ = wait(list(jobs), return_when=FIRST_COMPLETED)
            for future in done:
                cid, _seed = jobs.pop(future)
                with self.store.transaction():
                    self.store.add_evaluation(cid, "final", future.result())
                self.on_event("final", {"candidate_id": cid})
        return _best_by_mean_val(self.store, finalists, self.config.seed, self.rungs.full.fidelity)


def _val_stats(store: SQLiteStore, row: CandidateRow, base_seed: int, full: dict[str, Any]) -> tuple[float, float, int]:
    """Mean, sample std and count of full-protocol val accuracies over the finalist seeds."""
    vals = [e["val_accuracy"] for e in store.evaluations(row.id) if e["status"] == "ok" and e["fidelity"] == full
            and (e["purpose"] == "final" or e["seed"] == base_seed)]
    if not vals:
        return -1.0, 0.0, 0
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
    return mean, math.sqrt(var), len(vals)


def _best_by_mean_val(store: SQLiteStore, finalists: list[CandidateRow], base_seed: int,
                      full: dict[str, Any]) -> CandidateRow | None:
    """The best zoo member by mean val accuracy, displaced by the best search candidate only when
    that candidate's mean val accuracy is higher by more than one standard error of the difference
    (a win within seed noise is not claimed). Test accuracy plays no part."""
    stats = {row.id: _val_stats(store, row, base_seed, full) for row in finalists}
    scored = [r for r in finalists if stats[r.id][2]]
    best_zoo = max((r for r in scored if r.is_seed), key=lambda r: (stats[r.id][0], -r.id), default=None)
    best_found = max((r for r in scored if not r.is_seed), key=lambda r: (stats[r.id][0], -r.id), default=None)
    if best_found is None or best_zoo is None:
        return best_found or best_zoo
    (m1, s1, n1), (m0, s0, n0) = stats[best_found.id], stats[best_zoo.id]
    margin = math.sqrt(s1 ** 2 / n1 + s0 ** 2 / n0)
    return best_found if m1 - m0 > margin else best_zoo
