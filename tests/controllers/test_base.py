"""The action space and parent selection shared by every controller."""

from __future__ import annotations

import random

import pytest

from autofusion.controllers.base import ACTION_SPACE, Action, History, Record, select_parents
from autofusion.controllers.evolution import EvolutionController


def rec(cid: int, acc: float, reward: float | None = None) -> Record:
    return Record(id=cid, origin="synth", status="ok", val_accuracy=acc, params=10, flops=10, parent_ids=(),
                  action=None, has_genome=True, is_seed=False, reward=reward)


POP = [rec(1, 0.5), rec(2, 0.9), rec(3, 0.7), rec(4, 0.6)]


def test_actions_round_trip_through_their_stored_form() -> None:
    for action in ACTION_SPACE + (Action("crossover", None, "tournament"),):
        assert Action(**action.to_dict()) == action
    assert "selection" not in Action("fresh").to_dict()  # stored actions of earlier runs stay identical
    with pytest.raises(ValueError, match="selection"):
        Action("mutate_small", None, "oldest")


def test_selections_pick_what_they_say() -> None:
    rng = random.Random(0)
    assert select_parents(POP, "best", 1, rng) == (2,)
    assert select_parents(POP, "recent", 2, rng) == (4, 3)
    assert select_parents(POP, "best", 2, rng) == (2, 3)
    picks = {select_parents(POP, "random", 1, random.Random(i))[0] for i in range(40)}
    assert picks == {1, 2, 3, 4}
    assert all(len(set(select_parents(POP, "tournament", 2, random.Random(i)))) == 2 for i in range(20))
    assert select_parents(POP[:1], "tournament", 2, rng) == (1,)  # fewer parents than asked when the population is small


def test_selection_ranks_by_the_objective_not_raw_accuracy() -> None:
    pop = [rec(1, 0.9, reward=0.4), rec(2, 0.8, reward=0.8)]  # the accurate one is too large
    assert select_parents(pop, "best", 1, random.Random(0)) == (2,)
    history = History(pop, budget=10, n_proposed=0)
    assert history.best().id == 1 and history.best_scored().id == 2
    evolution = EvolutionController(population_size=2, tournament_size=2, crossover_prob=0.0, min_population=2,
                                    initial_random=0)
    assert all(evolution.propose(history, random.Random(i)).parent_ids == (2,) for i in range(10))


def test_evolution_draws_fresh_designs_before_evolving_from_the_zoo() -> None:
    zoo = [rec(i, 0.25 + 0.01 * i) for i in range(1, 6)]
    seeds = [Record(**{**r.__dict__, "is_seed": True}) for r in zoo]
    evolution = EvolutionController(min_population=2, initial_random=3)
    first = evolution.propose(History(seeds, budget=10, n_proposed=0), random.Random(0))
    assert first.action.operator == "fresh" and first.parent_ids == ()
    searched = seeds + [rec(10 + i, 0.3) for i in range(3)]
    later = [evolution.propose(History(searched, budget=10, n_proposed=3), random.Random(i)) for i in range(10)]
    assert all(p.action.operator != "fresh" and p.parent_ids for p in later)
