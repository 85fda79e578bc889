"""The bridge: every action of the action space becomes a synthesizer edit and an LLM instruction."""

from __future__ import annotations

from autofusion import bridge
from autofusion.controllers.base import ACTION_SPACE, SELECTIONS, Action, History, Proposal
from autofusion.generators.base import FAMILIES, OPERATORS, Parent
from autofusion.tasks.format import TaskSpec

SPEC = TaskSpec(name="t", num_classes=2, modalities={"a": (6,), "b": (4, 5)}, metric="accuracy")
PARENTS = (Parent(id=3, code="", val_accuracy=0.8125, params=12_345, flops=67_890), Parent(id=7, code=""))


def test_the_action_space_is_every_operator_with_every_family_hint() -> None:
    assert len(ACTION_SPACE) == len(set(ACTION_SPACE)) == len(OPERATORS) * (len(FAMILIES) + 1)


def test_every_action_maps_to_its_edit_and_a_distinct_instruction() -> None:
    texts = set()
    for action in ACTION_SPACE:
        parents = PARENTS[: action.n_parents]
        proposal = Proposal(Action(action.operator, action.family, "best" if parents else None),
                            tuple(p.id for p in parents))
        request = bridge.to_request(proposal, parents, History([], 10, 0), SPEC, seed=1, index=0)
        assert (request.operator, request.family) == (action.operator, action.family)
        assert request.context["edit"] == {"operator": action.operator, "family": action.family,
                                           "selection": proposal.action.selection,
                                           "parent_ids": list(proposal.parent_ids)}
        texts.add(request.instruction)
    assert len(texts) == len(ACTION_SPACE)


def test_instruction_names_parents_their_metrics_how_they_were_chosen_and_the_limits() -> None:
    proposal = Proposal(Action("crossover", None, "tournament"), (3, 7))
    text = bridge.instruction(proposal, PARENTS, {"max_params": 50_000, "max_flops": None})
    assert "#3 (val accuracy 0.8125, 12,345 parameters, 67,890 FLOPs per sample)" in text
    assert "#7" in text and "tournament" in text
    assert "at most 50,000 parameters" in text and "FLOPs per sample)" in text
    assert "Hard limits" not in bridge.instruction(proposal, PARENTS, {})


def test_every_selection_has_a_description() -> None:
    assert set(bridge.SELECTION_TEXT) == set(SELECTIONS)
