"""Random search: every proposal is an independent fresh design (IID sampling).

A strong baseline at small budgets (DESIGN: "simple IID sampling is a strong baseline"); every other
controller is benchmarked against it at equal budget.
"""

from __future__ import annotations

import random

from autofusion.controllers.base import Action, Controller, History, Proposal, random_family
from autofusion.generators.base import FRESH


class RandomController(Controller):
    name = "random"

    def propose(self, history: History, rng: random.Random) -> Proposal:
        return Proposal(Action(FRESH, random_family(rng)))
