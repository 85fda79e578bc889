"""Pull the candidate module out of a model's reply.

Handles what real replies look like: fenced blocks (```python, ```py, ``` plain, ~~~), code with
no fence, chatter before and after, `<think>` sections of reasoning models, several blocks (the
one defining `FusionModel` wins; import-only blocks and blocks defining helpers it uses are joined
in front of it), and truncated replies: a finish reason of "length"/"max_tokens"/"MAX_TOKENS", or
an unclosed fence whose code does not parse, is reported as `truncated`, never passed on.

The result is data (`Extraction`), not an exception. Nothing here checks that the code is safe or
correct: that is the gate's job.
"""

from __future__ import annotations

import ast
import enum
import re
from dataclasses import dataclass

from autofusion import gate
from autofusion.llm.base import TRUNCATED_FINISH_REASONS

ENTRY_CLASS = "FusionModel"
_PY_TAGS = {"", "python", "py", "python3", "py3", "pytorch", "torch"}
_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([\w+.-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)
_OPEN_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([\w+.-]*)[^\n]*\n", re.M)
_THINK = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.S | re.I)
_CODE_START = re.compile(r"^(import |from \w|class \w|def \w|@\w|#)")
_DEFINES_ENTRY = re.compile(rf"^class\s+{ENTRY_CLASS}\b", re.M)


class ExtractStatus(str, enum.Enum):
    OK = "ok"
    NO_CODE = "no_code"
    TRUNCATED = "truncated"


@dataclass(frozen=True)
class Extraction:
    status: ExtractStatus
    code: str | None = None
    reason: str = ""  # why there is no code, or how it was assembled

    @property
    def ok(self) -> bool:
        return self.status is ExtractStatus.OK


def extract_code(reply: str, finish_reason: str | None = None) -> Extraction:
    """The module source in `reply`, or why there is none."""
    if finish_reason in TRUNCATED_FINISH_REASONS:
        return Extraction(ExtractStatus.TRUNCATED, reason=f"the reply was cut off (finish reason {finish_reason!r})")
    text = _THINK.sub("", reply).replace("\r\n", "\n")
    blocks, unclosed = _fenced_blocks(text)
    if unclosed is not None and not _parses(unclosed):
        return Extraction(ExtractStatus.TRUNCATED, reason="the reply ends inside an unclosed code block")
    if unclosed is not None:
        blocks.append(unclosed)
    if not blocks:
        unfenced = _unfenced_code(text)
        blocks = [unfenced] if unfenced else []
    chosen = [b for b in blocks if _DEFINES_ENTRY.search(b)]
    if not chosen:
        return Extraction(ExtractStatus.NO_CODE, reason=f"the reply defines no `class {ENTRY_CLASS}`")
    main = chosen[-1]  # a reply that revises its code shows the final version last
    others = [b for b in blocks if b is not main and not _DEFINES_ENTRY.search(b)]
    code, how = _join(main, others)
    return Extraction(ExtractStatus.OK, code=code.strip() + "\n", reason=how)


def _fenced_blocks(text: str) -> tuple[list[str], str | None]:
    """Python blocks of closed fences, and the code of a final fence left open (or None)."""
    blocks = [m.group(3) for m in _FENCE.finditer(text) if m.group(2).lower() in _PY_TAGS]
    rest = _FENCE.sub("", text)
    opened = list(_OPEN_FENCE.finditer(rest))
    if opened and opened[-1].group(2).lower() in _PY_TAGS:
        return blocks, rest[opened[-1].end():]
    return blocks, None


def _unfenced_code(text: str) -> str | None:
    """Code written without a fence: from the first code-looking line, trailing chatter removed."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return None
    body = lines[start:]
    for end in range(len(body), 0, -1):  # drop trailing prose until the rest parses
        candidate = "\n".join(body[:end])
        if _parses(candidate) and _DEFINES_ENTRY.search(candidate):
            return candidate
    return "\n".join(body)


def _join(main: str, others: list[str]) -> tuple[str, str]:
    """Put import-only blocks and blocks defining names `main` uses (but lacks) in front of it."""
    used = _names_used(main)
    defined = _names_defined(main)
    have = {line.strip() for line in main.split("\n")}
    prefix: list[str] = []
    for block in others:
        if _is_imports_only(block):
            lines = [ln for ln in block.strip().split("\n") if ln.strip() and ln.strip() not in have]
            if lines:
                prefix.append("\n".join(lines))
        elif (_names_defined(block) - defined) & used:
            prefix.append(block.strip())
    if not prefix:
        return main, "one block"
    return "\n\n".join(prefix + [main.strip()]), f"joined {len(prefix) + 1} blocks"


def _parses(code: str) -> bool:
    try:
        gate.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _is_imports_only(block: str) -> bool:
    try:
        tree = gate.parse(block)
    except (SyntaxError, ValueError):
        return False
    return bool(tree.body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in tree.body)


def _names_defined(code: str) -> set[str]:
    try:
        tree = gate.parse(code)
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _names_used(code: str) -> set[str]:
    try:
        tree = gate.parse(code)
    except (SyntaxError, ValueError):
        return set()
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
