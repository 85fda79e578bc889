"""The objective: scores, strict config, a bounded learning signal, Pareto fronts."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import pytest

from autofusion.controllers.objective import Objective, pareto_front, pareto_fronts
from autofusion.errors import ConfigError


@dataclass(frozen=True)
class Row:
    id: int
    status: str
    val_accuracy: float | None
    params: int | None
    flops: int | None


def test_accuracy_objective_is_val_accuracy_and_none_for_failures() -> None:
    objective = Objective.from_dict({"kind": "accuracy"})
    assert objective.reward(Row(1, "ok", 0.8, 10**7, 10**9)) == 0.8
    assert objective.reward(Row(2, "failed", None, None, None)) is None
    assert objective.reward(Row(3, "rejected", 0.9, 10, 10)) is None


def test_penalized_objective_charges_per_doubling_above_the_reference() -> None:
    objective = Objective.from_dict({"kind": "penalized", "params_weight": 0.01, "reference_params": 1000,
                                     "flops_weight": 0.02, "reference_flops": 10_000})
    assert objective.score(0.8, 500, 5000) == 0.8  # under both references: no penalty
    assert objective.score(0.8, 4000, 5000) == pytest.approx(0.8 - 0.02)
    assert objective.score(0.8, 4000, 20_000) == pytest.approx(0.8 - 0.02 - 0.02)


@pytest.mark.parametrize("raw, message", [
    ({"kind": "acuracy"}, "kind"),
    ({"params_wieght": 1.0}, "params_wieght"),
    ({"kind": "accuracy", "params_weight": 0.1}, "penalized"),
    ({"kind": "penalized", "params_weight": 0.1}, "reference_params"),
    ({"kind": "penalized", "flops_weight": -1.0, "reference_flops": 1}, "flops_weight"),
    ({"failed_penalty": -3.0}, "failed_penalty"),
    ({"kind": "penalized", "params_weight": "a lot", "reference_params": 1}, "params_weight"),
])
def test_bad_objective_settings_are_refused_with_the_key_named(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Objective.from_dict(raw)


def test_shaped_reward_is_bounded_and_orders_outcomes() -> None:
    objective = Objective()
    rng = random.Random(0)
    for _ in range(2000):
        score, parent, best = (rng.uniform(-5, 5) for _ in range(3))
        assert -0.5 <= objective.shaped_reward("ok", None, score, parent, best) <= 1.0
    failed = objective.shaped_reward("failed", "train", None, 0.5, 0.6)
    over_budget = objective.shaped_reward("rejected", "budget", None, 0.5, 0.6)
    rejected = objective.shaped_reward("rejected", "gate", None, 0.5, 0.6)
    worse = objective.shaped_reward("ok", None, 0.45, 0.5, 0.6)
    better_than_parent = objective.shaped_reward("ok", None, 0.55, 0.5, 0.6)
    new_best = objective.shaped_reward("ok", None, 0.65, 0.5, 0.6)
    assert failed < over_budget < rejected < worse < better_than_parent < new_best
    assert objective.shaped_reward("ok", None, 0.5, None, None) == 0.0  # nothing to compare with yet


def _dominated(p: tuple[int, float, float], points: list[tuple[int, float, float]]) -> bool:
    return any(q[1] >= p[1] and q[2] <= p[2] and (q[1] > p[1] or q[2] < p[2]) for q in points)


def test_pareto_front_is_exactly_the_non_dominated_points() -> None:
    rng = random.Random(1)
    for _ in range(50):
        points = [(i, rng.choice([0.5, 0.6, 0.7, rng.random()]), float(rng.choice([1, 2, 3, rng.randint(1, 50)])))
                  for i in range(12)]
        front = pareto_front(points)
        assert [p[2] for p in front] == sorted(p[2] for p in front)
        assert not any(_dominated(p, points) for p in front)
        kept = {(p[1], p[2]) for p in front}
        assert all(_dominated(p, points) or (p[1], p[2]) in kept for p in points)
        for a, b in itertools.combinations(front, 2):
            assert (a[1], a[2]) != (b[1], b[2])  # exact duplicates appear once


def test_pareto_fronts_use_successful_candidates_with_ids() -> None:
    rows = [Row(1, "ok", 0.7, 100, 1000), Row(2, "ok", 0.8, 400, 500), Row(3, "ok", 0.6, 200, 300),
            Row(4, "failed", None, None, None), Row(5, "ok", 0.75, 50, None)]
    fronts = pareto_fronts(rows, {1: "zoo:concat", 2: "synth", 3: "synth", 5: "synth"})
    assert [p["id"] for p in fronts["params"]] == [5, 2]
    assert [p["id"] for p in fronts["flops"]] == [3, 2]
    assert fronts["params"][1] == {"id": 2, "val_accuracy": 0.8, "params": 400, "origin": "synth"}
