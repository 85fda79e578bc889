"""A2C learns on a synthetic decision problem, and its state survives JSON and a restart exactly."""

from __future__ import annotations

import json
import random

import pytest
import torch
from toy import ToyProblem, seed_record

from autofusion.controllers.a2c import A2CController
from autofusion.controllers.base import History, Record

STEPS = 80  # the bound: 80 observations, ~40 gradient steps with the default settings


def run_toy(controller: A2CController, seed: int, steps: int = STEPS) -> tuple[float, float, int]:
    toy = ToyProblem()
    before = controller.action_probabilities(toy.history())[toy.best]
    hits_late = sum(toy.step(controller, seed).val_accuracy == toy.good_accuracy and i >= steps - 20
                    for i in range(steps))
    return before, controller.action_probabilities(toy.history())[toy.best], hits_late


@pytest.mark.parametrize("seed", [0, 1])
def test_policy_shifts_probability_toward_the_clearly_best_action(seed: int) -> None:
    before, after, hits_late = run_toy(A2CController(seed=seed), seed)
    assert before == pytest.approx(1 / 24, rel=0.1)  # near-uniform over the 24 (operator, family) pairs
    assert after > 0.5 and after > 10 * before
    assert hits_late >= 8  # it also acts on it: at least 8 of the last 20 proposals are the best action


def test_the_same_check_fails_for_an_agent_that_does_not_learn() -> None:
    before, after, hits_late = run_toy(A2CController(seed=0, lr=0.0), 0)
    assert after == pytest.approx(before, abs=0.02)  # the criterion above would fail
    assert hits_late < 8


def test_weights_change_only_through_observations() -> None:
    agent = A2CController(seed=3)
    initial = {k: v.clone() for k, v in agent.net.state_dict().items()}
    toy = ToyProblem()
    for _ in range(4):
        toy.step(agent, 3)
    assert agent.n_updates == 2
    assert any(not torch.equal(initial[k], v) for k, v in agent.net.state_dict().items())


def test_state_dict_is_json_and_a_restored_agent_continues_identically() -> None:
    agent, toy = A2CController(seed=5), ToyProblem()
    for _ in range(11):  # odd: one transition waits in the buffer
        toy.step(agent, 5)
    agent.propose(toy.history(), random.Random(99))  # one proposal in flight
    state = json.loads(json.dumps(agent.state_dict()))
    twin = A2CController(seed=123)  # other initial weights, overwritten by the load
    twin.load_state_dict(state)
    assert len(twin.buffer) == 1 and len(twin.pending) == 1
    agent.pending.clear(), twin.pending.clear()
    twin_toy = ToyProblem(records=list(toy.records), n_proposed=toy.n_proposed)
    for _ in range(9):
        a, b = toy.step(agent, 5), twin_toy.step(twin, 5)
        assert (a.action, a.parent_ids) == (b.action, b.parent_ids)
    for (k, v), w in zip(agent.net.state_dict().items(), twin.net.state_dict().values()):
        assert torch.equal(v, w), k
    assert agent.state_dict() == twin.state_dict()


def test_load_refuses_state_made_with_other_settings() -> None:
    state = A2CController(seed=0).state_dict()
    with pytest.raises(ValueError, match="controller_options"):
        A2CController(seed=0, hidden=16).load_state_dict(state)


def test_parallel_proposals_are_matched_to_results_in_completion_order() -> None:
    agent, toy = A2CController(seed=0), ToyProblem()
    history = toy.history()
    proposals = [agent.propose(history, random.Random(i)) for i in range(3)]
    states = [p["state"] for p in agent.pending]
    assert len(agent.pending) == 3
    records = [toy.outcome(p.action, 10 + i, p.parent_ids) for i, p in enumerate(proposals)]
    finished = list(toy.records)
    for record in reversed(records):  # completion order is the reverse of proposal order
        finished.append(record)
        agent.observe(record, History(finished, toy.budget, 3))
    assert agent.pending == []
    assert agent.n_observed == 3
    # The first observation (of the last proposal) went into the update with the last proposal's state.
    assert agent.n_updates == 1 and agent.buffer[0]["state"] == states[0]


def test_a_result_without_its_proposal_is_learned_from_the_rebuilt_state() -> None:
    agent, toy = A2CController(seed=0), ToyProblem()
    for i in range(50):  # a proposal with a parent, so its selection matters too
        proposal = agent.propose(toy.history(), random.Random(i))
        expected = agent.pending.pop()  # as after a crash: the proposal was never saved
        if proposal.parent_ids:
            break
    record = toy.outcome(proposal.action, 5, proposal.parent_ids)
    agent.observe(record, History([*toy.records, record], toy.budget, 1))
    assert agent.buffer[0]["state"] == expected["state"] and agent.buffer[0]["action"] == expected["action"]


def test_operators_that_need_parents_are_masked_until_the_population_holds_them() -> None:
    agent = A2CController(seed=0)
    empty = History([], budget=10, n_proposed=0)
    assert all(agent.propose(empty, random.Random(i)).action.operator == "fresh" for i in range(20))
    one = History([seed_record(1)], budget=10, n_proposed=0)
    ops = {agent.propose(one, random.Random(i)).action.operator for i in range(40)}
    assert "crossover" not in ops and {"mutate_small", "mutate_large"} & ops


def test_zoo_seeds_and_records_without_action_teach_nothing() -> None:
    agent = A2CController(seed=0)
    agent.observe(seed_record(1), History([seed_record(1)], 10, 0))
    assert agent.n_observed == 0 and agent.buffer == []


def test_failures_are_learned_as_penalties() -> None:
    agent, toy = A2CController(seed=0), ToyProblem()
    proposal = agent.propose(toy.history(), random.Random(0))
    failed = Record(id=9, origin="synth", status="failed", val_accuracy=None, params=None, flops=None,
                    parent_ids=proposal.parent_ids, action=proposal.action, has_genome=False, is_seed=False)
    agent.observe(failed, History([*toy.records, failed], toy.budget, 1))
    assert agent.buffer[0]["reward"] == agent.objective.failed_penalty
