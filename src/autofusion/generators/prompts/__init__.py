"""Prompt templates (the *.txt files beside this one) and the code that fills them from a request.

Templates are `string.Template` files rendered strictly: a missing variable, an unknown one, or a
stray `$` is an error naming the template and the variable, never placeholder text in a prompt.
Text that comes from running candidate code (errors, tracebacks) is truncated and wrapped in
<untrusted-data> markers that the system prompt tells the model to treat as data.

Recognised `GenerationRequest.context` keys (all optional; others are ignored):
  history: list of {id, summary | origin + action, val_accuracy | error | status, params}
  best_val_accuracy: float   baselines: {name: val_accuracy}
  max_params, max_flops: int (top level, or nested in `budgets`)
  allowed_imports: list of module names   masks: list of modalities that come with a mask
  proposal_index: int (recorded with each LLM call)
"""

from __future__ import annotations

import string
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping, Sequence

from autofusion.errors import ConfigError
from autofusion.generators.base import CROSSOVER, GenerationRequest, Parent
from autofusion.llm.base import Message

DEFAULT_ALLOWED_IMPORTS = ("torch", "torch.nn", "torch.nn.functional", "math")
MAX_QUOTED_ERROR_CHARS = 2000
MAX_HISTORY_ITEMS = 12
MAX_HISTORY_ERROR_CHARS = 200
UNTRUSTED_OPEN = "<untrusted-data>"
UNTRUSTED_CLOSE = "</untrusted-data>"


@lru_cache(maxsize=None)
def _template(name: str) -> string.Template:
    try:
        text = resources.files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"prompt template {name}.txt is missing from autofusion/generators/prompts/; "
                          "reinstall autofusion") from None
    return string.Template(text)


def template_variables(name: str) -> set[str]:
    """The $variables a template uses."""
    template = _template(name)
    found: set[str] = set()
    for match in template.pattern.finditer(template.template):
        if match.group("invalid") is not None:
            raise ConfigError(f"prompt template {name}.txt has a stray '$' at offset {match.start()}; "
                              "write $$ for a literal dollar sign")
        named = match.group("named") or match.group("braced")
        if named:
            found.add(named)
    return found


def render_prompt(name: str, **values: Any) -> str:
    """Fill template `name` with exactly the variables it uses; anything else is an error."""
    wanted = template_variables(name)
    missing, unknown = wanted - set(values), set(values) - wanted
    if missing or unknown:
        raise ConfigError(f"prompt template {name}.txt needs {sorted(wanted)}; missing {sorted(missing)}, "
                          f"unknown {sorted(unknown)}")
    return _template(name).substitute({k: str(v) for k, v in values.items()})


def quote_untrusted(text: str, limit: int = MAX_QUOTED_ERROR_CHARS) -> str:
    """`text` cut to `limit` characters and fenced as data; markers inside it are defused."""
    text = text.replace(UNTRUSTED_OPEN, "<untrusted_data>").replace(UNTRUSTED_CLOSE, "</untrusted_data>")
    if len(text) > limit:
        text = text[:limit] + f"\n[... {len(text) - limit} more characters cut]"
    return f"{UNTRUSTED_OPEN}\n{text}\n{UNTRUSTED_CLOSE}"


def summarize_failures(failures: Sequence[str]) -> str:
    if not failures:
        return "(none)"
    lines = [f"- attempt {i}: {quote_untrusted(gist(f), 300)}" for i, f in enumerate(failures, 1)]
    return "\n".join(lines)


def build_messages(request: GenerationRequest) -> list[Message]:
    """The opening system and user messages for `request`."""
    context = request.context
    allowed = context.get("allowed_imports") or DEFAULT_ALLOWED_IMPORTS
    system = render_prompt("system", allowed_imports=", ".join(f"`{m}`" for m in allowed))
    task = request.task
    user = render_prompt(
        "generate",
        task_name=task.name,
        num_classes=task.num_classes,
        metric=task.metric,
        task_description=task.description.strip() or "(no description)",
        modalities=_modalities(task.modalities, context.get("masks")),
        budgets=_budgets(context),
        to_beat=_to_beat(context),
        operator=request.operator,
        family=request.family or "any (your choice)",
        instruction=request.instruction.strip() or "(none)",
        parents=_parents(request),
        history=_history(context.get("history") or ()),
    )
    return [Message("system", system), Message("user", user)]


def _modalities(modalities: Mapping[str, tuple[int, ...]], masks: Sequence[str] | None) -> str:
    lines = []
    for name, shape in modalities.items():
        dims = ", ".join(str(d) for d in shape)
        if len(shape) == 2 and masks is not None and name not in masks:
            lines.append(f"- `{name}`: token sequence, float32 [B, {dims}] (no mask: every token is real)")
        elif len(shape) == 2:
            has_mask = "may come with" if masks is None else "comes with"
            lines.append(f"- `{name}`: token sequence, float32 [B, {dims}]; {has_mask} `{name}_mask` "
                         f"bool [B, {shape[0]}] (True = real token)")
        else:
            lines.append(f"- `{name}`: vector, float32 [B, {dims}]")
    return "\n".join(lines)


def _budgets(context: Mapping[str, Any]) -> str:
    limits = {**context, **(context.get("budgets") or {})}  # flat keys, or nested under "budgets"
    parts = []
    if limits.get("max_params") is not None:
        parts.append(f"at most {int(limits['max_params']):,} trainable parameters")
    if limits.get("max_flops") is not None:
        parts.append(f"at most {int(limits['max_flops']):,} FLOPs per forward pass as measured by the checker")
    return "; ".join(parts) if parts else "no explicit limit; keep the module small enough to train in minutes"


def _to_beat(context: Mapping[str, Any]) -> str:
    parts = []
    if context.get("best_val_accuracy") is not None:
        parts.append(f"best candidate so far: val accuracy {float(context['best_val_accuracy']):.4f}")
    for name, value in (context.get("baselines") or {}).items():
        if value is not None:
            parts.append(f"baseline {name}: {float(value):.4f}")
    return "; ".join(parts) if parts else "(nothing measured yet)"


def _parents(request: GenerationRequest) -> str:
    if not request.parents:
        return "Parent code: none; write a new module from scratch."
    label = "Parents to combine (take the best idea of each)" if request.operator == CROSSOVER else "Parent to edit"
    return label + ":\n\n" + "\n\n".join(_parent(p) for p in request.parents)


def _parent(parent: Parent) -> str:
    facts = [f"#{parent.id}"]
    if parent.val_accuracy is not None:
        facts.append(f"val accuracy {parent.val_accuracy:.4f}")
    if parent.params is not None:
        facts.append(f"{parent.params:,} params")
    if parent.flops is not None:
        facts.append(f"{parent.flops:,} FLOPs")
    return f"Candidate {', '.join(facts)}:\n```python\n{parent.code.strip()}\n```"


def _history(items: Sequence[Mapping[str, Any]]) -> str:
    if not items:
        return "(none yet)"
    return "\n".join(_history_line(item) for item in list(items)[-MAX_HISTORY_ITEMS:])


def _history_line(item: Mapping[str, Any]) -> str:
    head = f"- #{item.get('id', '?')} {_describe(item)}"
    if item.get("val_accuracy") is not None:
        params = f", {int(item['params']):,} params" if item.get("params") is not None else ""
        return f"{head}: val accuracy {float(item['val_accuracy']):.4f}{params}"
    if item.get("error"):
        return f"{head}: failed: {quote_untrusted(gist(str(item['error'])), MAX_HISTORY_ERROR_CHARS)}"
    return f"{head}: {item.get('status') or 'failed'}"


def _describe(item: Mapping[str, Any]) -> str:
    """The item's summary, else what made it (origin, operator, family)."""
    if str(item.get("summary") or "").strip():
        return str(item["summary"]).strip()
    action = item.get("action") or {}
    made = [str(item[k]) for k in ("origin",) if item.get(k)]
    made += [str(action[k]) for k in ("operator", "family") if isinstance(action, dict) and action.get(k)]
    return "(" + ", ".join(made) + ")" if made else "(no summary)"


def gist(text: str) -> str:
    """One line that says what went wrong: the last non-empty line (a traceback's names the error)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(empty)"
