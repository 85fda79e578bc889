"""The gate: reject a candidate before paying for its training.

Three checks, cheapest first: the static policy (this module: parse, import allow-list, forbidden
names and attributes, the candidate contract — every violation with its line), duplicate detection by
normalised code (comments, docstrings and formatting removed), and budgets (params/FLOPs, measured by
the smoke run in the sandbox). The static policy is the first, fast layer, never the security
boundary: that is the sandbox (see SECURITY.md).
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass

MAX_SOURCE_BYTES = 100_000
ALLOWED_MODULES = ("torch", "torch.nn", "torch.nn.functional", "math")
FORBIDDEN_CALLS = frozenset({
    "eval", "exec", "compile", "open", "input", "globals", "locals", "vars", "breakpoint",
    "__import__", "getattr", "setattr", "delattr", "help", "memoryview", "exit", "quit",
})
# Dunder attributes a fusion module legitimately uses; every other `x.__y__` is refused.
ALLOWED_DUNDERS = frozenset({"__init__"})
FORBIDDEN_ATTRS = frozenset({
    "f_globals", "f_locals", "f_back", "f_code", "gi_frame", "cr_frame", "ag_frame", "tb_frame",
    "func_globals", "co_code", "format_map", "mro", "os", "sys", "importlib", "ctypes", "builtins",
    "subprocess", "from_file", "load", "hub", "ops", "cpp_extension", "library", "distributed",
    "multiprocessing", "utils", "_C", "classes", "save", "storage", "untyped_storage",
})
TOP_LEVEL_OK = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
CODING_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.MULTILINE)


@dataclass(frozen=True)
class Violation:
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message} [{self.rule}]"


def _module_allowed(name: str) -> bool:
    return name in ALLOWED_MODULES


class _Policy(ast.NodeVisitor):
    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def flag(self, node: ast.AST, rule: str, message: str) -> None:
        self.violations.append(Violation(getattr(node, "lineno", 0), rule, message))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not _module_allowed(alias.name):
                self.flag(node, "import", f"import of {alias.name!r} is not allowed; allowed: {', '.join(ALLOWED_MODULES)}")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.flag(node, "import", "relative imports are not allowed")
            return
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if alias.name == "*":
                self.flag(node, "import", f"`from {module} import *` is not allowed; import names explicitly")
            elif not (_module_allowed(full) or (_module_allowed(module) and alias.name not in FORBIDDEN_ATTRS and not alias.name.startswith("_"))):
                self.flag(node, "import", f"`from {module} import {alias.name}` is not allowed; allowed modules: {', '.join(ALLOWED_MODULES)}")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_CALLS:
            self.flag(node, "forbidden-name", f"use of `{node.id}` is not allowed in a fusion module")
        elif node.id.startswith("__") and node.id != "__name__":
            self.flag(node, "dunder-name", f"name `{node.id}` is not allowed")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr.startswith("__") and attr.endswith("__") and attr not in ALLOWED_DUNDERS:
            self.flag(node, "dunder-attribute", f"attribute `{attr}` is not allowed")
        elif attr in FORBIDDEN_ATTRS:
            self.flag(node, "forbidden-attribute", f"attribute `.{attr}` is not allowed in a fusion module")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.flag(node, "global", "`global` statements are not allowed")

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.flag(node, "global", "`nonlocal` statements are not allowed")


def _check_top_level(tree: ast.Module, out: list[Violation]) -> None:
    for i, node in enumerate(tree.body):
        is_docstring = i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        if is_docstring or isinstance(node, TOP_LEVEL_OK):
            continue
        out.append(Violation(node.lineno, "top-level", f"top-level `{type(node).__name__}` statement: only imports, constants, functions and classes are allowed at module level"))


def _check_contract(tree: ast.Module, out: list[Violation]) -> None:
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "FusionModel"), None)
    if cls is None:
        out.append(Violation(1, "contract", "no `class FusionModel(torch.nn.Module)` at module level"))
        return
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    init = methods.get("__init__")
    if init is None or len(init.args.args) < 3:
        out.append(Violation(cls.lineno, "contract", "FusionModel must define `__init__(self, input_shapes, num_classes)`"))
    forward = methods.get("forward")
    if forward is None:
        out.append(Violation(cls.lineno, "contract", "FusionModel must define `forward(self, **inputs)`"))
    elif forward.args.kwarg is None:
        out.append(Violation(forward.lineno, "contract", "forward must accept the modalities as keyword arguments: `def forward(self, **inputs)`"))


def check_source(code: str) -> list[Violation]:
    """Every violation of the static policy, with line numbers (empty list: the code may run)."""
    raw = code.encode("utf-8", errors="surrogatepass")
    if len(raw) > MAX_SOURCE_BYTES:
        return [Violation(1, "size", f"source is {len(raw)} bytes; the limit is {MAX_SOURCE_BYTES}")]
    if CODING_COOKIE.search(b"\n".join(raw.splitlines()[:2])):
        return [Violation(1, "encoding", "a coding cookie is not allowed; candidates are plain UTF-8")]
    try:
        tree = ast.parse(code, filename="candidate.py")
    except SyntaxError as exc:
        return [Violation(exc.lineno or 1, "syntax", f"syntax error: {exc.msg}")]
    out: list[Violation] = []
    for node in ast.walk(tree):
        for name in _identifiers(node):
            if not name.isascii():
                out.append(Violation(getattr(node, "lineno", 1), "identifier", f"non-ASCII identifier {name!r} is not allowed"))
    _check_top_level(tree, out)
    _check_contract(tree, out)
    policy = _Policy()
    policy.visit(tree)
    out.extend(policy.violations)
    return sorted(out, key=lambda v: (v.line, v.rule))


def _identifiers(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.alias):
        return [node.name, node.asname or ""]
    return []


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def normalized_hash(code: str) -> str:
    """Hash of the code without comments, docstrings or formatting (for duplicate detection)."""
    try:
        text = ast.unparse(_strip_docstrings(ast.parse(code)))
    except SyntaxError:
        text = code
    return hashlib.sha256(text.encode()).hexdigest()
