"""Regularized (aging) evolution with tournament selection (Real et al., AAAI 2019).

The population is the `population_size` most recently finished successful candidates (zoo seeds
included): the oldest leaves as a new one arrives, which is what regularizes the search. A parent is
the best of `tournament_size` members drawn at random (by the configured objective); with probability `crossover_prob` a second
tournament picks a mate. Until the population is full, and for the first `initial_random` proposals
in any case, proposals are fresh random designs: the zoo alone may carry no signal to evolve from
(on `tokens-interaction` every zoo member is at chance after 10 epochs, and only fresh designs found
the modules that solve it). The population is derived from the history each time, so the controller
has no state to lose on resume.
"""

from __future__ import annotations

import random

from autofusion.controllers.base import Action, Controller, History, Proposal, Record, random_family
from autofusion.generators.base import CROSSOVER, FRESH, MUTATE_LARGE, MUTATE_SMALL


class EvolutionController(Controller):
    name = "evolution"

    def __init__(self, population_size: int = 16, tournament_size: int = 4, crossover_prob: float = 0.2,
                 large_mutation_prob: float = 0.25, min_population: int = 4, initial_random: int = 4) -> None:
        if not (2 <= tournament_size <= population_size):
            raise ValueError(f"tournament_size={tournament_size} must be in [2, population_size={population_size}]")
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.crossover_prob = crossover_prob
        self.large_mutation_prob = large_mutation_prob
        self.min_population = min_population
        self.initial_random = initial_random

    def population(self, history: History) -> list[Record]:
        return [r for r in history.ok() if r.has_genome][-self.population_size:]

    def _tournament(self, population: list[Record], rng: random.Random) -> Record:
        contestants = rng.sample(population, min(self.tournament_size, len(population)))
        return max(contestants, key=lambda r: (r.score or 0.0, r.id))  # the objective's value

    def propose(self, history: History, rng: random.Random) -> Proposal:
        population = self.population(history)
        n_searched = sum(1 for r in history.records if not r.is_seed)
        if len(population) < self.min_population or n_searched < self.initial_random:
            return Proposal(Action(FRESH, random_family(rng)))
        parent = self._tournament(population, rng)
        if rng.random() < self.crossover_prob and len(population) > 1:
            mate = self._tournament([r for r in population if r.id != parent.id], rng)
            return Proposal(Action(CROSSOVER, None), (parent.id, mate.id))
        operator = MUTATE_LARGE if rng.random() < self.large_mutation_prob else MUTATE_SMALL
        return Proposal(Action(operator, random_family(rng)), (parent.id,))
