"""Advantage actor-critic (A2C) controller that learns online from the real search history.

Each proposal is a factorised action — operator x family hint x parent selection (see
`base.ACTION_SPACE`, `base.SELECTIONS`) — sampled from a small torch policy over a state computed
from the history alone (`state_features`): budget used, best score, recent shaped rewards and their
trend, improvement rate, recent rejected / failed / over-budget fractions, the last candidate's
parent, the best's size, and per-family / per-operator / per-selection usage and mean reward.
Operators that need more parents than the population holds are masked out. The learning signal is
`Objective.shaped_reward` (bounded). Every `update_every` observations the agent takes one gradient
step on the collected transitions: policy gradient with the one-step TD advantage
`r + gamma * V(s') - V(s)`, a value loss and an entropy bonus.

Proposals may be in flight in parallel; each is remembered (state, action, mask) under its action
and parent ids until its result is observed, in completion order. A result with no remembered
proposal (proposed just before a crash) is matched to the state rebuilt from the history without
it, which is exact when evaluations run one at a time. Actions are drawn from the `rng` the loop
passes (derived from run seed and proposal index); the agent has no other randomness, so weights,
optimiser moments and the remembered transitions (`state_dict`, JSON with safetensors-encoded
tensors) are its whole state and a resumed run continues the same agent. This file never calls a
generator, the sandbox or the store.
"""

from __future__ import annotations

import base64
import bisect
import math
import random
import statistics
from dataclasses import asdict, dataclass
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from autofusion.controllers.base import (
    ACTION_SPACE,
    FAMILY_HINTS,
    SELECTIONS,
    Action,
    Controller,
    History,
    Proposal,
    Record,
    select_parents,
)
from autofusion.controllers.objective import Objective
from autofusion.generators.base import OPERATORS

HEADS = (len(ACTION_SPACE), len(SELECTIONS))  # (operator x family hint) jointly, then parent selection
STATE_VERSION = 1


@dataclass(frozen=True)
class A2CSettings:
    hidden: int = 32  # two tanh layers of this width: the state is ~40 numbers, the budget small
    lr: float = 0.003  # moves the policy within a few dozen observations without collapsing it
    gamma: float = 0.5  # short horizon: a search step mostly pays off by itself
    entropy_coef: float = 0.01  # keeps exploring instead of collapsing on an early lucky action
    value_coef: float = 0.5
    update_every: int = 2  # observations per gradient step (an n-observation batch)
    optimizer: str = "rmsprop"  # "rmsprop" (as in the A2C paper), "adam" or "sgd"
    max_grad_norm: float = 1.0
    window: int = 8  # recent search candidates the "recent" features look at
    population_size: int = 32  # parents are drawn from the most recent successful candidates
    tournament_size: int = 4

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.update_every < 1 or self.window < 1 or self.population_size < 2:
            raise ValueError("hidden, update_every, window must be >= 1 and population_size >= 2")
        if self.lr < 0 or not 0.0 <= self.gamma < 1.0 or self.entropy_coef < 0 or self.value_coef < 0:
            raise ValueError(f"lr={self.lr} >= 0, gamma={self.gamma} in [0, 1), coefficients >= 0 required")


class PolicyValueNet(torch.nn.Module):
    def __init__(self, n_state: int, hidden: int) -> None:
        super().__init__()
        self.trunk = torch.nn.Sequential(torch.nn.Linear(n_state, hidden), torch.nn.Tanh(),
                                         torch.nn.Linear(hidden, hidden), torch.nn.Tanh())
        self.policy = torch.nn.Linear(hidden, sum(HEADS))
        self.value = torch.nn.Linear(hidden, 1)
        with torch.no_grad():  # start near-uniform, so early proposals explore every action
            self.policy.weight.mul_(0.01)
            self.policy.bias.zero_()

    def forward(self, state: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        h = self.trunk(state)
        return list(torch.split(self.policy(h), HEADS, dim=-1)), self.value(h).squeeze(-1)


# ---------------------------------------------------------------------------- state features


def population(history: History, size: int) -> list[Record]:
    with_genome = [r for r in history.ok() if r.has_genome]
    return with_genome[-size:]


def shaped_rewards(history: History, objective: Objective) -> dict[int, float]:
    """The learning signal of every search candidate in `history`, each judged against the
    candidates that finished before it (history order is completion order)."""
    out: dict[int, float] = {}
    by_id = {r.id: r for r in history}
    prior: list[float] = []  # scores finished so far, sorted
    for r in history:
        if not r.is_seed and r.action is not None:
            out[r.id] = reward_of(r, by_id, prior, objective)
        if r.score is not None:
            bisect.insort(prior, r.score)
    return out


def reward_of(record: Record, by_id: dict[int, Record], prior: list[float], objective: Objective) -> float:
    """`Objective.shaped_reward` of `record` given the sorted scores of the candidates before it."""
    best_before = prior[-1] if prior else None
    if record.parent_ids:
        scores = [by_id[p].score for p in record.parent_ids if p in by_id and by_id[p].score is not None]
        reference = max(scores) if scores else None  # type: ignore[type-var]
    else:  # a fresh design competes with the median of what came before
        reference = _sorted_median(prior)
    return objective.shaped_reward(record.status, record.stage, record.score, reference, best_before)


def _sorted_median(values: list[float]) -> float | None:
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def state_features(history: History, objective: Objective, settings: A2CSettings) -> list[float]:
    rewards = shaped_rewards(history, objective)
    search = [r for r in history if not r.is_seed and r.action is not None]
    recent = search[-settings.window:]
    recent_rewards = [rewards[r.id] for r in recent]
    half = len(recent_rewards) // 2
    trend = _mean(recent_rewards[half:]) - _mean(recent_rewards[:half]) if half else 0.0
    best = history.best_scored()
    scores = [r.score for r in history if r.score is not None]
    pop = population(history, settings.population_size)
    n = max(len(recent), 1)
    steps_since_best = _steps_since_best(search)
    last = search[-1] if search else None
    parent = history.by_id(last.parent_ids[0]) if last and last.parent_ids else None
    feats = [
        min(history.n_proposed / max(history.budget, 1), 1.0),
        best.score if best else 0.0,
        (best.score - statistics.median(scores)) if best else 0.0,
        _mean(recent_rewards),
        trend,
        sum(1 for r in recent if rewards[r.id] > 0.5) / n,  # new bests carry a +0.5 bonus
        sum(1 for r in recent if r.status == "rejected" and r.stage != "budget") / n,
        sum(1 for r in recent if r.status == "rejected" and r.stage == "budget") / n,
        sum(1 for r in recent if r.status in ("failed", "timeout")) / n,
        min(steps_since_best / max(history.budget, 1), 1.0),
        len(pop) / settings.population_size,
        (parent.score - best.score) if parent and parent.score is not None and best else 0.0,
        rewards[last.id] if last else 0.0,
        math.log10(max(best.params or 1, 1)) / 7.0 if best else 0.0,
        math.log10(max(best.flops or 1, 1)) / 10.0 if best else 0.0,
    ]
    feats += _usage(search, rewards, lambda a: a.family, FAMILY_HINTS, with_share=True)
    feats += _usage(search, rewards, lambda a: a.operator, OPERATORS, with_share=False)
    feats += _usage(search, rewards, lambda a: a.selection, SELECTIONS, with_share=False)
    return feats


def _steps_since_best(search: list[Record]) -> int:
    best, since = None, len(search)
    for i, r in enumerate(search):
        if r.score is not None and (best is None or r.score > best):
            best, since = r.score, len(search) - 1 - i
    return since


def _usage(search: list[Record], rewards: dict[int, float], key: Any, values: tuple[Any, ...],
           with_share: bool) -> list[float]:
    """Per value: (share of candidates that used it,) mean shaped reward of those (0 if unused)."""
    out: list[float] = []
    for value in values:
        used = [rewards[r.id] for r in search if r.action is not None and key(r.action) == value]
        if with_share:
            out.append(len(used) / max(len(search), 1))
        out.append(_mean(used))
    return out


N_STATE = 15 + 2 * len(FAMILY_HINTS) + len(OPERATORS) + len(SELECTIONS)


# ------------------------------------------------------------------------------ the controller


class A2CController(Controller):
    name = "a2c"

    def __init__(self, seed: int = 0, objective: Objective | dict[str, Any] | None = None, **options: Any) -> None:
        self.objective = objective if isinstance(objective, Objective) else Objective.from_dict(objective)
        self.settings = A2CSettings(**options)
        # The network is tiny and the search process trains nothing itself (candidates train in
        # sandbox children with their own thread setting): with torch's default thread pool each
        # step costs milliseconds more on a busy machine. Switching threads per call costs more still.
        torch.set_num_threads(1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = PolicyValueNet(N_STATE, self.settings.hidden)
        self.optimizer = _make_optimizer(self.settings, self.net)
        self.pending: list[dict[str, Any]] = []  # proposals not yet observed, oldest first
        self.buffer: list[dict[str, Any]] = []  # observed transitions awaiting the next update
        self.n_observed = 0
        self.n_updates = 0
        self.last_stats: dict[str, float] = {}

    # ----------------------------------------------------------------------------- acting

    def masks(self, history: History) -> list[list[bool]]:
        n_pop = len(population(history, self.settings.population_size))
        return [[a.n_parents <= n_pop for a in ACTION_SPACE], [True] * HEADS[1]]

    def distributions(self, history: History) -> list[list[float]]:
        """Per head (ACTION_SPACE, SELECTIONS): the probabilities of the next proposal."""
        state = torch.tensor(state_features(history, self.objective, self.settings), dtype=torch.float32)
        with torch.no_grad():
            logits, _ = self.net(state)
        return [_masked_softmax(l, torch.tensor(m)).tolist() for l, m in zip(logits, self.masks(history))]

    def action_probabilities(self, history: History) -> dict[tuple[str, str | None], float]:
        """Probability of each (operator, family hint) pair, the selection marginalised out."""
        p_action, _ = self.distributions(history)
        return {(a.operator, a.family): p for a, p in zip(ACTION_SPACE, p_action)}

    def propose(self, history: History, rng: random.Random) -> Proposal:
        state = state_features(history, self.objective, self.settings)
        masks = self.masks(history)
        with torch.no_grad():
            logits, _ = self.net(torch.tensor(state, dtype=torch.float32))
        probs = [_masked_softmax(l, torch.tensor(m)).tolist() for l, m in zip(logits, masks)]
        i_action, i_sel = (_draw(p, rng) for p in probs)
        chosen, selection = ACTION_SPACE[i_action], SELECTIONS[i_sel]
        pop = population(history, self.settings.population_size)
        parents = select_parents(pop, selection, chosen.n_parents, rng, self.settings.tournament_size)
        action = Action(chosen.operator, chosen.family, selection if parents else None)
        self.pending.append({"key": _key(action, parents), "state": state, "action": [i_action, i_sel],
                             "masks": masks})
        return Proposal(action, parents)

    # ---------------------------------------------------------------------------- learning

    def observe(self, record: Record, history: History) -> None:
        if record.is_seed or record.action is None:
            return
        before = History([r for r in history if r.id != record.id], history.budget, max(history.n_proposed - 1, 0))
        step = self._take_pending(record) or self._rebuild(record, before)
        prior = sorted(r.score for r in before if r.score is not None)
        reward = reward_of(record, {r.id: r for r in history}, prior, self.objective)
        self.buffer.append({**step, "reward": reward,
                            "next_state": state_features(history, self.objective, self.settings)})
        self.n_observed += 1
        if len(self.buffer) >= self.settings.update_every:
            self.update()

    def _take_pending(self, record: Record) -> dict[str, Any] | None:
        key = _key(record.action, record.parent_ids)  # type: ignore[arg-type]
        for i, step in enumerate(self.pending):
            if step["key"] == key:
                return {k: v for k, v in self.pending.pop(i).items() if k != "key"}
        return None

    def _rebuild(self, record: Record, before: History) -> dict[str, Any]:
        action = record.action
        assert action is not None
        selection = action.selection or SELECTIONS[0]
        return {"state": state_features(before, self.objective, self.settings), "masks": self.masks(before),
                "action": [ACTION_SPACE.index(Action(action.operator, action.family)), SELECTIONS.index(selection)]}

    def update(self) -> None:
        """One A2C step on the buffered transitions, then the buffer is emptied."""
        batch, self.buffer = self.buffer, []
        states = torch.tensor([t["state"] for t in batch], dtype=torch.float32)
        next_states = torch.tensor([t["next_state"] for t in batch], dtype=torch.float32)
        rewards = torch.tensor([t["reward"] for t in batch], dtype=torch.float32)
        logits, values = self.net(states)
        with torch.no_grad():
            _, next_values = self.net(next_states)
        targets = rewards + self.settings.gamma * next_values
        advantages = (targets - values).detach()
        log_prob = torch.zeros(len(batch))
        entropy = torch.zeros(len(batch))
        for head, head_logits in enumerate(logits):
            mask = torch.tensor([t["masks"][head] for t in batch])
            logp = torch.log_softmax(head_logits.masked_fill(~mask, -1e9), dim=-1)
            chosen = torch.tensor([t["action"][head] for t in batch])
            # The selection had no effect on a fresh design: it gets no credit and no blame.
            used = torch.tensor([head == 0 or ACTION_SPACE[t["action"][0]].n_parents > 0 for t in batch]).float()
            log_prob = log_prob + used * logp.gather(1, chosen[:, None]).squeeze(1)
            entropy = entropy + used * -(logp.exp() * logp).masked_fill(~mask, 0.0).sum(-1)
        policy_loss = -(log_prob * advantages).mean()
        value_loss = (targets - values).pow(2).mean()
        loss = policy_loss + self.settings.value_coef * value_loss - self.settings.entropy_coef * entropy.mean()
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()
        self.n_updates += 1
        self.last_stats = {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
                           "entropy": entropy.mean().item(), "mean_reward": rewards.mean().item()}

    # ------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        tensors = {f"net.{k}": v.detach().clone() for k, v in self.net.state_dict().items()}
        for index, slot in self.optimizer.state_dict()["state"].items():
            for name, value in slot.items():
                tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).clone()
        return {"version": STATE_VERSION, "settings": asdict(self.settings), "objective": self.objective.to_dict(),
                "tensors": base64.b64encode(st_save(tensors)).decode("ascii"), "pending": self.pending,
                "buffer": self.buffer, "n_observed": self.n_observed, "n_updates": self.n_updates,
                "last_stats": self.last_stats}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION or state.get("settings") != asdict(self.settings):
            raise ValueError("saved A2C state was made with other settings or another version; "
                             "resume with the run's own config (controller_options unchanged)")
        tensors = st_load(base64.b64decode(state["tensors"]))
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                slots.setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict({"state": slots, "param_groups": self.optimizer.state_dict()["param_groups"]})
        self.pending = list(state["pending"])
        self.buffer = list(state["buffer"])
        self.n_observed = int(state["n_observed"])
        self.n_updates = int(state["n_updates"])
        self.last_stats = dict(state.get("last_stats", {}))


def _make_optimizer(settings: A2CSettings, net: torch.nn.Module) -> torch.optim.Optimizer:
    if settings.optimizer == "rmsprop":
        return torch.optim.RMSprop(net.parameters(), lr=settings.lr, alpha=0.99, eps=1e-5)
    if settings.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=settings.lr)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(net.parameters(), lr=settings.lr)
    raise ValueError(f"optimizer={settings.optimizer!r} is unknown; choose rmsprop, adam or sgd")


def _key(action: Action, parent_ids: tuple[int, ...]) -> list[Any]:
    return [action.operator, action.family, action.selection, list(parent_ids)]


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.masked_fill(~mask, -1e9), dim=-1).double()


def _draw(probs: list[float], rng: random.Random) -> int:
    """Inverse-CDF draw from the loop's rng (never an impossible index, even with rounding)."""
    u, total = rng.random(), 0.0
    allowed = [i for i, p in enumerate(probs) if p > 0]
    for i in allowed:
        total += probs[i]
        if u < total:
            return i
    return allowed[-1]
