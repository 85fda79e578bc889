"""The bridge: turns a controller's action into a generator request.

For the offline synthesizer the request's `operator` and `family` *are* the structured edit (mutate
gently / boldly toward a family, cross two parents, draw a fresh design). For an LLM generator the
same action becomes a natural-language instruction naming the parents, their metrics and the hard
limits. This module is the only place that knows both sides; controllers know nothing of code,
generators nothing of policies. The action space itself is defined in `controllers.base`.
"""

from __future__ import annotations

from typing import Any

from autofusion.controllers.base import History, Proposal
from autofusion.generators.base import CROSSOVER, FRESH, MUTATE_LARGE, MUTATE_SMALL, GenerationRequest, Parent
from autofusion.tasks.format import TaskSpec

OPERATOR_TEXT = {
    MUTATE_SMALL: "Make one or two small, local changes to the parent module (a width, a dropout rate, the number of heads, a pooling choice) and keep everything else.",
    MUTATE_LARGE: "Make a substantial change to the parent module: replace its fusion operator, its encoders or its depth, while keeping what makes it work.",
    CROSSOVER: "Combine the two parent modules: take the strongest ideas of each (for example the encoders of one and the fusion operator of the other) into one coherent module.",
    FRESH: "Design a new fusion module from scratch, different from what has been tried.",
}
FAMILY_TEXT = {
    "attention": "Steer toward attention-based fusion: cross-attention between modalities in either direction, or joint self-attention over all tokens.",
    "gating": "Steer toward gating or conditioning: gated multimodal units, FiLM-style feature-wise modulation, learned modality gates.",
    "tensor": "Steer toward multiplicative interactions: bilinear, low-rank tensor (LMF) or full tensor (TFN) fusion.",
    "pooling": "Steer toward the pooling and aggregation choices: attention pooling, CLS tokens, max vs. mean, concatenation vs. sum.",
    "depth": "Steer toward capacity: change depth or width, add residual connections or normalisation.",
}


SELECTION_TEXT = {
    "best": "the best candidate so far",
    "tournament": "the winner of a small tournament among recent candidates",
    "recent": "the most recently evaluated candidate",
    "random": "a candidate drawn at random from the population",
}


def edit(proposal: Proposal) -> dict[str, Any]:
    """The structured edit a synthesizer applies: operator, family hint, parents (and how they were picked)."""
    a = proposal.action
    return {"operator": a.operator, "family": a.family, "selection": a.selection,
            "parent_ids": list(proposal.parent_ids)}


def _parent_text(parent: Parent) -> str:
    facts = [f"val accuracy {parent.val_accuracy:.4f}" if parent.val_accuracy is not None else None,
             f"{parent.params:,} parameters" if parent.params is not None else None,
             f"{parent.flops:,} FLOPs per sample" if parent.flops is not None else None]
    known = [f for f in facts if f]
    return f"#{parent.id}" + (f" ({', '.join(known)})" if known else "")


def instruction(proposal: Proposal, parents: tuple[Parent, ...] = (), budgets: dict[str, Any] | None = None) -> str:
    """The natural-language form of the action for an LLM generator."""
    a = proposal.action
    text = OPERATOR_TEXT[a.operator]
    if a.family:
        text += " " + FAMILY_TEXT[a.family]
    if parents:
        which = f" ({SELECTION_TEXT[a.selection]})" if a.selection else ""
        label = "Parent" if len(parents) == 1 else "Parents"
        text += f" {label}{which}: " + "; ".join(_parent_text(p) for p in parents) + "."
        text += " Beat the parent's val accuracy." if len(parents) == 1 else " Beat both parents' val accuracy."
    limits = [f"at most {budgets['max_params']:,} parameters" if (budgets or {}).get("max_params") else None,
              f"at most {budgets['max_flops']:,} forward FLOPs per sample" if (budgets or {}).get("max_flops") else None]
    limits = [x for x in limits if x]
    if limits:
        text += " Hard limits (larger modules are rejected): " + " and ".join(limits) + "."
    return text


def history_summary(history: History, limit: int = 8) -> list[dict[str, Any]]:
    """The best and the most recent candidates, compactly, for the generator's context."""
    ok = sorted(history.ok(), key=lambda r: -(r.val_accuracy or 0.0))[: limit // 2]
    recent = [r for r in history.records[-limit:] if r not in ok]
    rows = []
    for r in ok + recent:
        rows.append({"id": r.id, "origin": r.origin, "status": r.status, "val_accuracy": r.val_accuracy,
                     "params": r.params, "action": r.action.to_dict() if r.action else None})
    return rows


def to_request(proposal: Proposal, parents: tuple[Parent, ...], history: History, task: TaskSpec,
               seed: int, index: int | None = None, budgets: dict[str, Any] | None = None) -> GenerationRequest:
    best = history.best()
    context = {
        "edit": edit(proposal),
        "history": history_summary(history),
        "best_val_accuracy": best.val_accuracy if best else None,
        "budgets": dict(budgets or {}),
        "proposal_index": index,
    }
    return GenerationRequest(task=task, operator=proposal.action.operator, family=proposal.action.family,
                             instruction=instruction(proposal, parents, budgets), parents=parents, seed=seed, context=context)
