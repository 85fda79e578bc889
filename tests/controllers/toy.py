"""A synthetic decision problem for controllers: drive propose/observe without any training.

`ToyProblem` scores each proposal from its action alone: `best` (operator, family) reaches a high
val accuracy, every other action a low one, and a scripted set of actions fail or are rejected.
Records are built exactly as the search loop builds them (ids in completion order, zoo seeds first).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from autofusion.controllers.base import Action, Controller, History, Record

SEED_ACCURACY = 0.6


def seed_record(cid: int) -> Record:
    return Record(id=cid, origin=f"zoo:m{cid}", status="ok", val_accuracy=SEED_ACCURACY, params=1000, flops=2000,
                  parent_ids=(), action=None, has_genome=True, is_seed=True, reward=SEED_ACCURACY)


@dataclass
class ToyProblem:
    best: tuple[str, str | None] = ("mutate_large", "tensor")
    good_accuracy: float = 0.9
    bad_accuracy: float = 0.5
    budget: int = 200
    records: list[Record] = field(default_factory=lambda: [seed_record(i) for i in range(1, 5)])
    n_proposed: int = 0

    def history(self) -> History:
        return History(self.records, self.budget, self.n_proposed)

    def outcome(self, action: Action, cid: int, parent_ids: tuple[int, ...]) -> Record:
        acc = self.good_accuracy if (action.operator, action.family) == self.best else self.bad_accuracy
        return Record(id=cid, origin="synth", status="ok", val_accuracy=acc, params=1000, flops=2000,
                      parent_ids=parent_ids, action=action, has_genome=True, is_seed=False, reward=acc)

    def step(self, controller: Controller, seed: int = 0) -> Record:
        rng = random.Random(f"{seed}:{self.n_proposed}")
        proposal = controller.propose(self.history(), rng)
        self.n_proposed += 1
        record = self.outcome(proposal.action, len(self.records) + 1, proposal.parent_ids)
        self.records.append(record)
        controller.observe(record, self.history())
        return record
