"""The gate: reject a candidate before paying for its training.

Three checks, cheapest first: the static policy (this module: parse, import allow-list, attribute
allow-list on modules, forbidden names and attributes, the candidate contract — every violation with
its line), duplicate detection by normalised code (comments, docstrings and formatting removed), and
budgets (params/FLOPs, measured by the smoke run in the sandbox). The static policy is the first,
fast layer, never the security boundary: that is the sandbox (see SECURITY.md).

The policy is an allow-list where it can be: modules may be imported only from `ALLOWED_MODULES`, and
every attribute chain that starts at a module (`torch.x`, `nn.y`, `F.z`, `math.w`) must name
something in `MODULE_API`. Attributes of other objects (tensors, layers) cannot be typed statically;
for those, names starting with `_` (except on `self`) and `FORBIDDEN_ATTRS` are refused.
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import threading
import tokenize
from dataclasses import dataclass

MAX_SOURCE_BYTES = 100_000
ALLOWED_MODULES = ("torch", "torch.nn", "torch.nn.functional", "math")

_TORCH = """
Tensor Size dtype device finfo iinfo no_grad enable_grad is_tensor is_floating_point numel
float float16 float32 float64 bfloat16 half double int int8 int16 int32 int64 long bool uint8 cfloat
tensor as_tensor zeros zeros_like ones ones_like full full_like empty empty_like eye arange linspace
logspace rand rand_like randn randn_like randint randint_like randperm bernoulli multinomial normal
cat concat concatenate stack hstack vstack dstack split chunk tensor_split unbind narrow gather
scatter scatter_add index_select masked_select masked_fill take where nonzero flatten unflatten
reshape view_as_real view_as_complex squeeze unsqueeze transpose permute movedim swapaxes t flip
roll repeat_interleave tile broadcast_to broadcast_tensors meshgrid tril triu diag diagonal diag_embed
einsum matmul mm bmm baddbmm addmm addbmm mv dot outer inner kron tensordot cross cdist cosine_similarity
sum mean median prod std var std_mean var_mean max min amax amin argmax argmin maximum minimum
logsumexp cumsum cumprod cummax cummin norm dist topk sort argsort kthvalue mode all any count_nonzero
abs neg sign exp exp2 expm1 log log2 log10 log1p sqrt rsqrt square pow reciprocal sin cos tan asin
acos atan atan2 sinh cosh tanh asinh acosh atanh sigmoid logit erf erfc erfinv relu softmax
log_softmax clamp clip clamp_min clamp_max floor ceil round trunc frac fmod remainder lerp addcmul
addcdiv add sub subtract mul multiply div divide true_divide floor_divide isfinite isnan isinf
nan_to_num eq ne lt le gt ge equal allclose isclose logical_and logical_or logical_not logical_xor
bitwise_and bitwise_or bitwise_not dropout layer_norm group_norm batch_norm
linalg fft special nn
"""
_NN = """
Module ModuleList ModuleDict Sequential Parameter ParameterList ParameterDict Identity Linear
Bilinear LazyLinear Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d Embedding EmbeddingBag
LayerNorm GroupNorm BatchNorm1d BatchNorm2d InstanceNorm1d RMSNorm LocalResponseNorm Dropout
Dropout1d Dropout2d AlphaDropout ReLU ReLU6 LeakyReLU PReLU RReLU ELU SELU CELU GELU SiLU Mish
Sigmoid Tanh Hardtanh Hardswish Hardsigmoid Softplus Softsign Softmax LogSoftmax Softmin GLU
Tanhshrink Threshold MultiheadAttention TransformerEncoder TransformerEncoderLayer TransformerDecoder
TransformerDecoderLayer Transformer LSTM GRU RNN LSTMCell GRUCell RNNCell AdaptiveAvgPool1d
AdaptiveMaxPool1d AvgPool1d MaxPool1d AdaptiveAvgPool2d MaxPool2d AvgPool2d Flatten Unflatten
Upsample PixelShuffle CosineSimilarity PairwiseDistance ZeroPad1d ConstantPad1d functional init
"""
_F = """
linear bilinear relu relu6 leaky_relu prelu elu selu celu gelu silu mish sigmoid tanh hardtanh
hardswish hardsigmoid softplus softsign softmax log_softmax softmin glu logsigmoid tanhshrink
threshold dropout dropout1d dropout2d alpha_dropout layer_norm group_norm batch_norm instance_norm
rms_norm local_response_norm normalize pad embedding one_hot cosine_similarity pairwise_distance
pdist scaled_dot_product_attention multi_head_attention_forward avg_pool1d max_pool1d avg_pool2d
max_pool2d adaptive_avg_pool1d adaptive_max_pool1d adaptive_avg_pool2d adaptive_max_pool2d conv1d
conv2d interpolate unfold fold cross_entropy nll_loss mse_loss l1_loss smooth_l1_loss kl_div
binary_cross_entropy binary_cross_entropy_with_logits gumbel_softmax
"""
_INIT = """
calculate_gain uniform_ normal_ trunc_normal_ constant_ ones_ zeros_ eye_ dirac_ xavier_uniform_
xavier_normal_ kaiming_uniform_ kaiming_normal_ orthogonal_ sparse_
"""
_MATH = """
pi e tau inf nan sqrt exp log log2 log10 log1p expm1 pow sin cos tan asin acos atan atan2 sinh cosh
tanh erf erfc gamma lgamma floor ceil trunc fabs fmod isfinite isnan isinf isclose prod fsum comb
perm factorial gcd lcm hypot dist copysign degrees radians
"""
_LINALG = "norm vector_norm matrix_norm qr svd svdvals eigh eigvalsh inv solve det slogdet cholesky pinv matrix_exp"
_FFT = "fft ifft rfft irfft fft2 ifft2 rfft2 irfft2 fftn ifftn rfftn irfftn fftfreq rfftfreq fftshift ifftshift"
_SPECIAL = "erf erfc erfinv expit logit log_softmax softmax logsumexp xlogy gammaln digamma entr sinc i0 ndtr"

MODULE_API: dict[str, frozenset[str]] = {
    "torch": frozenset(_TORCH.split()), "torch.nn": frozenset(_NN.split()),
    "torch.nn.functional": frozenset(_F.split()), "torch.nn.init": frozenset(_INIT.split()),
    "torch.linalg": frozenset(_LINALG.split()), "torch.fft": frozenset(_FFT.split()),
    "torch.special": frozenset(_SPECIAL.split()), "math": frozenset(_MATH.split()),
}
FORBIDDEN_CALLS = frozenset({
    "eval", "exec", "compile", "open", "input", "globals", "locals", "vars", "breakpoint", "dir",
    "__import__", "setattr", "delattr", "help", "memoryview", "exit", "quit", "type", "object",
    "classmethod_descriptor", "__build_class__", "__loader__", "__spec__", "__builtins__",
})
NAME_ONLY_CONSTANT = ("getattr", "hasattr")  # allowed only as f(obj, "literal name")
# Attributes refused on any object: frames, code, globals, and torch's doors to files and natives.
FORBIDDEN_ATTRS = frozenset({
    "f_globals", "f_locals", "f_back", "f_code", "f_builtins", "f_trace", "gi_frame", "gi_code",
    "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code", "tb_frame", "tb_next",
    "func_globals", "func_code", "co_code", "co_consts", "co_names", "format", "format_map", "mro",
    "os", "sys", "importlib", "ctypes", "builtins", "subprocess", "inspect", "gc", "types", "socket",
    "from_file", "load", "save", "hub", "ops", "cpp_extension", "library", "distributed",
    "multiprocessing", "utils", "jit", "compile", "classes", "storage", "untyped_storage",
    "share_memory_", "data_ptr", "numpy", "tofile", "tobytes", "from_buffer", "frombuffer",
    "with_traceback", "set_num_threads", "manual_seed", "seed", "set_default_dtype",
    "set_grad_enabled", "set_flush_denormal", "use_deterministic_algorithms", "backends",
})
# nn.Module methods the trusted trainer relies on: a candidate class may not redefine them.
RESERVED_METHODS = frozenset({
    "parameters", "named_parameters", "buffers", "named_buffers", "children", "named_children",
    "modules", "named_modules", "state_dict", "load_state_dict", "train", "eval", "zero_grad", "to",
    "cpu", "cuda", "float", "double", "half", "type", "apply", "requires_grad_", "register_buffer",
    "register_parameter", "add_module", "register_module", "get_submodule", "share_memory",
    "numel", "size", "backward", "item", "tolist", "detach",
})
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


def _dotted(node: ast.AST) -> list[str] | None:
    """['torch', 'nn', 'Linear'] for torch.nn.Linear; None if the chain does not start at a name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


class _Policy(ast.NodeVisitor):
    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self.aliases: dict[str, str] = {}  # local name -> dotted path of a module or module member
        self.parents: dict[ast.AST, ast.AST] = {}

    def flag(self, node: ast.AST, rule: str, message: str) -> None:
        self.violations.append(Violation(getattr(node, "lineno", 0), rule, message))

    def run(self, tree: ast.Module) -> None:
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        self.visit(tree)

    # -------------------------------------------------------------------- imports

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not _module_allowed(alias.name):
                self.flag(node, "import", f"import of {alias.name!r} is not allowed; allowed: {', '.join(ALLOWED_MODULES)}")
            elif alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                self.aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.flag(node, "import", "relative imports are not allowed")
            return
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if alias.name == "*":
                self.flag(node, "import", f"`from {module} import *` is not allowed; import names explicitly")
            elif _module_allowed(full) or (module in MODULE_API and alias.name in MODULE_API[module]):
                self.aliases[alias.asname or alias.name] = full
            else:
                self.flag(node, "import", f"`from {module} import {alias.name}` is not allowed; allowed modules: {', '.join(ALLOWED_MODULES)}")

    # -------------------------------------------------------------------- names and attributes

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_CALLS:
            self.flag(node, "forbidden-name", f"use of `{node.id}` is not allowed in a fusion module")
        elif node.id.startswith("__") and node.id != "__name__":
            self.flag(node, "dunder-name", f"name `{node.id}` is not allowed")
        elif node.id in NAME_ONLY_CONSTANT:
            self._check_getattr(node)
        elif self._is_module(node.id) and not isinstance(self.parents.get(node), ast.Attribute):
            self.flag(node, "module-value", f"module `{node.id}` may only be used as `{node.id}.<name>`, not passed or stored")
        if isinstance(node.ctx, (ast.Store, ast.Del)) and node.id in self.aliases:
            self.flag(node, "rebind-import", f"`{node.id}` is an import and may not be reassigned")

    def _is_module(self, name: str) -> bool:
        return self.aliases.get(name) in MODULE_API

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr.startswith("__") and attr.endswith("__"):
            if not (attr == "__init__" and _is_super_call(node.value)):
                self.flag(node, "dunder-attribute", f"attribute `{attr}` is not allowed (only `super().__init__`)")
        elif attr.startswith("_") and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
            self.flag(node, "private-attribute", f"private attribute `.{attr}` is only allowed on `self`")
        elif attr in FORBIDDEN_ATTRS:
            self.flag(node, "forbidden-attribute", f"attribute `.{attr}` is not allowed in a fusion module")
        self._check_module_chain(node)
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            root = _dotted(node)
            if root and root[0] in self.aliases:
                self.flag(node, "assign-into-module", f"assignment into `{'.'.join(root)}`: modules and torch classes may not be modified")
        self.generic_visit(node)

    def _check_module_chain(self, node: ast.Attribute) -> None:
        if isinstance(self.parents.get(node), ast.Attribute):
            return  # checked once, from the outermost attribute of the chain
        parts = _dotted(node)
        if not parts or parts[0] not in self.aliases:
            return
        path = self.aliases[parts[0]].split(".") + parts[1:]
        for i in range(1, len(path)):
            module = ".".join(path[:i])
            if module not in MODULE_API:
                return  # past the module: attributes of a class or function, checked above
            if path[i] not in MODULE_API[module]:
                self.flag(node, "module-attribute", f"`{module}.{path[i]}` is not on the allow-list of what a fusion module may use")
                return
        if ".".join(path) in MODULE_API and not isinstance(self.parents.get(node), ast.Attribute):
            self.flag(node, "module-value", f"module `{'.'.join(path)}` may only be used as `<module>.<name>`")

    def _check_getattr(self, node: ast.Name) -> None:
        call = self.parents.get(node)
        ok = isinstance(call, ast.Call) and call.func is node and len(call.args) in (2, 3) and not call.keywords
        name = call.args[1] if ok else None  # type: ignore[union-attr]
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
            self.flag(node, "computed-attribute", f"`{node.id}` is only allowed as `{node.id}(obj, \"literal_name\")`")
            return
        fake = ast.Attribute(value=call.args[0], attr=name.value, ctx=ast.Load(), lineno=node.lineno)  # type: ignore[union-attr]
        self.parents[fake] = call  # type: ignore[assignment]
        self.visit_Attribute(fake)

    # -------------------------------------------------------------------- statements

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if node.keywords:
            self.flag(node, "class-keywords", "class keywords (metaclass=...) are not allowed")
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if item.name.startswith("__") and item.name != "__init__":
                    self.flag(item, "dunder-method", f"defining `{item.name}` is not allowed (only `__init__` and `forward` and plain methods)")
                elif item.name in RESERVED_METHODS:
                    self.flag(item, "reserved-method", f"`{item.name}` is an nn.Module method the trainer relies on and may not be redefined")
            elif not _is_declaration(item):
                self.flag(item, "class-body", f"`{type(item).__name__}` statement in a class body: only methods, constants and docstrings")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.flag(node, "global", "`global` statements are not allowed")

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.flag(node, "global", "`nonlocal` statements are not allowed")

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.flag(node, "async", "async functions are not allowed in a fusion module")
        self.generic_visit(node)

    def visit_Match(self, node: ast.Match) -> None:
        # A class pattern `case C(attr=x)` reads `attr` from the subject with no ast.Attribute node
        # to check, and a mapping pattern calls the subject's own `get`: a way around every
        # attribute rule. A fusion module has no use for pattern matching.
        self.flag(node, "match", "`match` statements are not allowed in a fusion module (use if/elif)")
        self.generic_visit(node)


def _is_super_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _is_constant_expr(node: ast.AST) -> bool:
    """Literals, and containers/arithmetic of literals (module-level constants)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_is_constant_expr(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_constant_expr(k) for k in node.keys) and all(_is_constant_expr(v) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return _is_constant_expr(node.operand)
    if isinstance(node, ast.BinOp):
        return _is_constant_expr(node.left) and _is_constant_expr(node.right)
    if isinstance(node, ast.Name):
        return True  # another constant (checked like any name)
    if isinstance(node, ast.Attribute):
        return _dotted(node) is not None  # e.g. math.pi, torch.float32 (checked by the chain rule)
    if isinstance(node, ast.Call):  # e.g. math.sqrt(HIDDEN): a module function of constants
        return (isinstance(node.func, ast.Attribute) and _dotted(node.func) is not None and not node.keywords
                and all(_is_constant_expr(a) for a in node.args))
    return False


def _is_docstring(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _is_declaration(node: ast.AST) -> bool:
    if _is_docstring(node) or isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Pass)):
        return True
    if isinstance(node, ast.Assign):
        return all(isinstance(t, ast.Name) for t in node.targets) and _is_constant_expr(node.value)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and (node.value is None or _is_constant_expr(node.value))
    return False


def _check_top_level(tree: ast.Module, out: list[Violation]) -> None:
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or _is_declaration(node):
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


_PARSE_LOCK = threading.Lock()


def parse(code: str, filename: str = "<unknown>") -> ast.Module:
    """`ast.parse`, one thread at a time: CPython 3.11 keeps the AST builder's recursion depth in
    shared state, so two threads parsing at once can fail with "AST constructor recursion depth
    mismatch" (seen with two evaluation workers). Raises SyntaxError like `ast.parse`."""
    with _PARSE_LOCK:
        return ast.parse(code, filename=filename)


def check_source(code: str) -> list[Violation]:
    """Every violation of the static policy, with line numbers (empty list: the code may run)."""
    raw = code.encode("utf-8", errors="surrogatepass")
    if len(raw) > MAX_SOURCE_BYTES:
        return [Violation(1, "size", f"source is {len(raw)} bytes; the limit is {MAX_SOURCE_BYTES}")]
    if CODING_COOKIE.search(b"\n".join(raw.splitlines()[:2])):
        return [Violation(1, "encoding", "a coding cookie is not allowed; candidates are plain UTF-8")]
    if "\x00" in code:
        return [Violation(1, "encoding", "NUL bytes are not allowed in source")]
    try:
        tree = parse(code, filename="candidate.py")
    except SyntaxError as exc:
        return [Violation(exc.lineno or 1, "syntax", f"syntax error: {exc.msg}")]
    out = _non_ascii_identifiers(code)
    _check_top_level(tree, out)
    _check_contract(tree, out)
    policy = _Policy()
    policy.run(tree)
    out.extend(policy.violations)
    return sorted(set(out), key=lambda v: (v.line, v.rule, v.message))


def _non_ascii_identifiers(code: str) -> list[Violation]:
    """Identifiers as written: the parser NFKC-normalises them (full-width `ｅｘｅｃ` is `exec`)."""
    if code.isascii():
        return []  # nothing to find, and tokenizing costs ~8 ms of the parent's time per candidate
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.NAME and not tok.string.isascii():
                out.append(Violation(tok.start[0], "identifier", f"non-ASCII identifier {tok.string!r} is not allowed"))
    except (tokenize.TokenError, SyntaxError):
        pass  # the parser has accepted it; tokenize's stricter corner cases are not a policy matter
    return out


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
        text = ast.unparse(_strip_docstrings(parse(code)))
    except SyntaxError:
        text = code
    return hashlib.sha256(text.encode()).hexdigest()
