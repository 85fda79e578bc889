"""The trained model as data: an ATen graph the trusted side can count and replay without candidate code.

Params and FLOPs measured inside the candidate's process are the candidate's claim: with the static
policy off, its code can patch the counters. So the child also traces its eval-mode forward once,
before training: a `TorchDispatchMode` (`_Recorder`) writes down every ATen operator the forward
dispatches, with every parameter and buffer as an input, and the graph goes to the parent as JSON
(`make_fx` built the same graph 10-20x slower: ~0.05 s of fixed cost per candidate). After every
epoch the child sends the current parameters and buffers. When training ends, a fresh sandboxed
process that never runs candidate code replays the graph with the best epoch's tensors on the val
and test inputs (`replay`), counting FLOPs per operator (`op_flops`), and the parent keeps those
logits only if they match what the candidate reported.
A hidden model cannot survive this: whatever produced the reported logits must be in the graph and
its tensors, which the parent counts itself (`count_params`). Decoding accepts ATen operators and
tuple indexing only; no Python callable of the candidate's is ever named, imported or called. The
tracer itself runs in the candidate's process and is not trusted: a graph that does not reproduce
the reported logits on every val and test row fails the check, whatever produced it.
Tracing switches off PyTorch's fused inference fast paths (`torch.backends.mha`:
`_transformer_encoder_layer_fwd`, `_native_multi_head_attention`), which `torch.utils.flop_counter`
cannot see into: counted in the candidate's process, the early-fusion transformer showed 1% of its
FLOPs and MulT half; counted on the graph, every matmul is there.
"""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

TRACE_BATCH = 512  # rows per traced batch (as in predict): the replay runs per chunk of this size; 64 made it 2x slower
CONSTANTS_EPOCH = -1  # the `epoch` field of the frames that carry a graph's constants
MAX_GRAPH_BYTES = 16 << 20
MAX_NODES = 200_000
MAX_DEPTH = 6  # nesting of argument lists
_OP_NAME = re.compile(r"^aten\.([a-z0-9_]+)\.([A-Za-z0-9_]+)$")
# ATen operators that touch files, storages shared with other processes or the random state the
# parent does not control; no eval-mode fusion module needs them.
DENIED_OPS = frozenset({"from_file", "_cufft_clear_plan_cache", "set_", "_set_from_file", "_unsafe_set",
                        "_fused_sdp_choice", "save", "load"})
_DTYPES = {str(t).removeprefix("torch."): t for t in (
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
    torch.int8, torch.uint8, torch.bool, torch.complex64)}
_LAYOUTS = {"strided": torch.strided}
_MEMORY_FORMATS = {"contiguous_format": torch.contiguous_format, "preserve_format": torch.preserve_format,
                   "channels_last": torch.channels_last}


class GraphError(Exception):
    """A graph that cannot be traced, decoded or replayed; the message says why."""


# ------------------------------------------------------------------------------ child side: trace

@dataclass(frozen=True)
class Traced:
    graph: bytes  # JSON: {"inputs": [...], "state": [...], "constants": [...], "nodes": [...]}
    constants: dict[str, torch.Tensor]  # tensors created inside forward, frozen at trace time
    batch: int  # the graph's fixed batch size
    flops: int  # forward FLOPs per sample on the traced batch (`op_flops`): the child's claim


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer the forward may read, by name (tied tensors once)."""
    state = dict(torch.nn.Module.named_parameters(model))
    state.update(torch.nn.Module.named_buffers(model))
    return {k: v.detach() for k, v in state.items()}


def trace(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Traced:
    """Trace `model` in eval mode on one batch of real inputs into a serialisable ATen graph."""
    state = {**dict(torch.nn.Module.named_parameters(model)), **dict(torch.nn.Module.named_buffers(model))}
    names, in_names = list(state), sorted(inputs)
    recorder = _Recorder()
    for kind, tensors in (("state", state), ("input", inputs)):
        for name in (names if kind == "state" else in_names):
            recorder.refs[tensors[name]] = recorder.add({"op": kind, "name": name})
    torch.nn.Module.train(model, False)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # fused kernels would hide their matmuls from the count
    try:
        with torch.no_grad(), recorder:
            out = model(**inputs)
    except GraphError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure is the candidate's, reported as data
        raise GraphError(f"the forward pass could not be traced into ATen operators: {type(exc).__name__}: {exc}"[:2000]) from None
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    if not isinstance(out, torch.Tensor):
        raise GraphError(f"forward returned {type(out).__name__}, not one tensor of logits")
    recorder.add({"op": "output", "args": recorder.encode(out)})
    raw = json.dumps({"inputs": in_names, "state": names, "constants": list(recorder.constants),
                      "nodes": recorder.nodes}, allow_nan=False, separators=(",", ":")).encode()
    if len(raw) > MAX_GRAPH_BYTES or len(recorder.nodes) > MAX_NODES:
        raise GraphError(f"the traced graph is too large ({len(recorder.nodes)} nodes, {len(raw)} bytes)")
    batch = next(iter(inputs.values())).shape[0]
    return Traced(raw, recorder.constants, batch, recorder.flops // batch)


class _Recorder(TorchDispatchMode):
    """Writes down every ATen operator the forward runs, below autograd, with its arguments: a
    tensor argument is a reference to the node that made it (or to a parameter, buffer or input);
    one made outside the recorded operators (`torch.tensor(...)`, a plain tensor attribute) becomes a
    constant, copied when first seen. Python control flow and scalars are fixed at their traced values."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[dict[str, Any]] = []
        self.refs: WeakIdKeyDictionary = WeakIdKeyDictionary()  # tensor -> index of the node holding it
        self.constants: dict[str, torch.Tensor] = {}
        self.flops = 0

    def add(self, entry: dict[str, Any]) -> int:
        if len(self.nodes) >= MAX_NODES:
            raise GraphError(f"the traced graph is too large (more than {MAX_NODES} nodes)")
        self.nodes.append(entry)
        return len(self.nodes) - 1

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if not isinstance(func, torch._ops.OpOverload) or func.namespace != "aten":
            raise GraphError(f"the forward calls {func}, which is not an ATen operator")
        entry = {"op": "call", "target": str(func), "args": self.encode(list(args)), "kwargs": self.encode(kwargs)}
        out = func(*args, **kwargs)
        self.flops += op_flops(func, list(args), kwargs, out)
        at = self.add(entry)
        if isinstance(out, torch.Tensor):
            self.refs[out] = at
        elif isinstance(out, (tuple, list)):
            for i, item in enumerate(out):
                if isinstance(item, torch.Tensor):
                    self.refs[item] = self.add({"op": "call", "target": "getitem", "args": [{"n": at}, i], "kwargs": {}})
        return out

    def encode(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            at = self.refs.get(value)
            if at is None:
                name = f"_tensor_constant{len(self.constants)}"
                self.constants[name] = value.detach().clone()
                at = self.refs[value] = self.add({"op": "constant", "name": name})
            return {"n": at}
        if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"f": repr(value)}
        if isinstance(value, (list, tuple)):
            return [self.encode(v) for v in value]
        if isinstance(value, dict):
            return {"kw": {str(k): self.encode(v) for k, v in value.items()}}
        if isinstance(value, torch.dtype):
            return {"dtype": str(value).removeprefix("torch.")}
        if isinstance(value, torch.device):
            return {"device": value.type}
        if isinstance(value, torch.layout):
            return {"layout": str(value).removeprefix("torch.")}
        if isinstance(value, torch.memory_format):
            return {"memory_format": str(value).removeprefix("torch.")}
        raise GraphError(f"the traced graph has an argument of type {type(value).__name__}, which cannot be replayed")


# ------------------------------------------------------------------------------ trusted side: decode

@dataclass(frozen=True)
class Graph:
    inputs: list[str]
    state: list[str]
    constants: list[str]
    nodes: list[tuple[str, Any, Any, Any]]  # (op, target or name, args, kwargs)
    literals: int  # numbers written into the graph as values (Scalar/float arguments)
    # After node i runs, `run` drops the values no later node reads (`frees[i]`), as eager execution
    # would: kept alive, every intermediate is a fresh allocation (replay 1.5-2x slower than eager).
    frees: list[list[int]]


def decode(raw: bytes) -> Graph:
    """Parse and check a graph; every operator is resolved here, before anything runs."""
    if len(raw) > MAX_GRAPH_BYTES:
        raise GraphError(f"the graph is {len(raw)} bytes, more than {MAX_GRAPH_BYTES}")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # also: nesting too deep, an integer too long to parse
        raise GraphError(f"the graph is not acceptable JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list) or len(doc["nodes"]) > MAX_NODES:
        raise GraphError("the graph is not an object with a bounded list of nodes")
    lists = {k: doc.get(k) for k in ("inputs", "state", "constants")}
    for key, names in lists.items():
        if not isinstance(names, list) or not all(isinstance(n, str) and len(n) < 300 for n in names):
            raise GraphError(f"the graph's {key!r} is not a list of names")
        if len(set(names)) != len(names):
            raise GraphError(f"the graph's {key!r} repeats a name")
    nodes: list[tuple[str, Any, Any, Any]] = []
    outputs = literals = 0
    for i, entry in enumerate(doc["nodes"]):
        if not isinstance(entry, dict):
            raise GraphError(f"node {i} is not an object")
        op = entry.get("op")
        if op in ("state", "input", "constant"):
            if entry.get("name") not in lists["inputs" if op == "input" else op if op == "state" else "constants"]:
                raise GraphError(f"node {i} reads an undeclared {op} {entry.get('name')!r}")
            nodes.append((op, entry["name"], None, None))
        elif op == "call":
            fn = _resolve(entry.get("target"))
            nodes.append((op, fn, _dec(entry.get("args"), i, 0), _dec(entry.get("kwargs"), i, 0)))
            if not isinstance(nodes[-1][2], list) or not isinstance(nodes[-1][3], _Kw):
                raise GraphError(f"node {i} needs a list of args and a dict of kwargs")
            literals += _value_literals(fn, nodes[-1][2], nodes[-1][3])
        elif op == "output":
            nodes.append((op, None, _dec(entry.get("args"), i, 0), None))
            outputs += 1
        else:
            raise GraphError(f"node {i} has an unknown op {op!r}")
    if outputs != 1 or nodes[-1][0] != "output":
        raise GraphError("the graph must end with exactly one output node")
    return Graph(lists["inputs"], lists["state"], lists["constants"], nodes, literals, _last_uses(nodes))


def _last_uses(nodes: list[tuple[str, Any, Any, Any]]) -> list[list[int]]:
    """For each node, the nodes whose value it is the last to read."""
    last: dict[int, int] = {}

    def visit(v: Any, at: int) -> None:
        if isinstance(v, _Ref):
            last[int(v)] = at
        elif isinstance(v, list):
            for x in v:
                visit(x, at)
        elif isinstance(v, _Kw):
            for x in v.values():
                visit(x, at)

    for i, (_, _, args, kwargs) in enumerate(nodes):
        visit(args, i)
        visit(kwargs, i)
    frees: list[list[int]] = [[] for _ in nodes]
    for ref, at in last.items():
        frees[at].append(ref)
    return frees


_VALUE_TYPES = frozenset({"number", "float", "complex"})  # a schema's Scalar, float, complex


def _base_type(schema_type: Any) -> str:
    name = str(schema_type)
    while name.startswith(("Optional[", "List[")):
        name = name[name.index("[") + 1:-1]
    return name


def _value_literals(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> int:
    """Numbers passed as values (`full(size, 0.37)`, `mul(x, 2.5)`, an eps): each is a stored number
    like a parameter. Shapes, dims and indices (int arguments) are structure and are not counted."""
    if fn is operator.getitem:
        return 0
    schema = fn._schema.arguments
    typed = [(schema[j], v) for j, v in enumerate(args) if j < len(schema)]
    typed += [(a, kwargs[a.name]) for a in schema if a.name in kwargs]
    return sum(_numbers(v) for a, v in typed if _base_type(a.type) in _VALUE_TYPES)


def _numbers(value: Any) -> int:
    if isinstance(value, bool) or isinstance(value, _Ref):
        return 0
    if isinstance(value, (int, float)):
        return 1
    if isinstance(value, list):
        return sum(_numbers(v) for v in value)
    return 0


def _resolve(target: Any) -> Callable[..., Any]:
    if target == "getitem":
        return operator.getitem
    match = _OP_NAME.match(target) if isinstance(target, str) else None
    if match is None:
        raise GraphError(f"operator {target!r} is not an ATen operator")
    name, overload = match.groups()
    if name in DENIED_OPS:
        raise GraphError(f"operator aten.{name} is not allowed in a fusion module")
    try:
        fn = getattr(getattr(torch.ops.aten, name), overload)
    except (AttributeError, RuntimeError):
        raise GraphError(f"operator {target} does not exist in this torch") from None
    if not isinstance(fn, torch._ops.OpOverload):
        raise GraphError(f"operator {target} is not an ATen operator overload")
    return fn


class _Ref(int):
    """A reference to an earlier node's value."""


class _Kw(dict):  # type: ignore[type-arg]
    """Decoded keyword arguments."""


def _dec(value: Any, at: int, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise GraphError(f"node {at}: arguments nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_dec(v, at, depth + 1) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        (tag, raw), = value.items()
        if tag == "n" and isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < at:
            return _Ref(raw)
        if tag == "f" and raw in ("inf", "-inf", "nan"):
            return float(raw)
        if tag == "kw" and isinstance(raw, dict):
            return _Kw({str(k): _dec(v, at, depth + 1) for k, v in raw.items()})
        if tag == "dtype" and raw in _DTYPES:
            return _DTYPES[raw]
        if tag == "device" and raw in ("cpu", "cuda"):
            return torch.device("cpu")  # replayed where the parent's data is; see `replay`
        if tag == "layout" and raw in _LAYOUTS:
            return _LAYOUTS[raw]
        if tag == "memory_format" and raw in _MEMORY_FORMATS:
            return _MEMORY_FORMATS[raw]
    if value == {}:
        return _Kw()
    raise GraphError(f"node {at}: cannot decode argument {str(value)[:200]}")


# ------------------------------------------------------------------------------ trusted side: replay

def run(graph: Graph, state: dict[str, torch.Tensor], constants: dict[str, torch.Tensor],
        inputs: dict[str, torch.Tensor], flops: list[int] | None = None) -> torch.Tensor:
    """Execute the graph on one batch; returns the single tensor output. With `flops`, adds the
    batch's FLOPs to `flops[0]` (see `op_flops`)."""
    values: list[Any] = []

    def arg(v: Any) -> Any:
        if isinstance(v, _Ref):
            return values[v]
        if isinstance(v, list):
            return [arg(x) for x in v]
        return v

    for i, (op, target, args, kwargs) in enumerate(graph.nodes):
        if op == "state":
            values.append(state[target])
        elif op == "input":
            values.append(inputs[target])
        elif op == "constant":
            values.append(constants[target])
        elif op == "call":
            a, k = arg(args), {key: arg(v) for key, v in kwargs.items()}
            try:
                out = target(*a, **k)
            except Exception as exc:  # noqa: BLE001
                raise GraphError(f"replaying {target} failed: {type(exc).__name__}: {str(exc)[:500]}") from None
            if flops is not None and target is not operator.getitem:
                flops[0] += op_flops(target, a, k, out)
            values.append(out)
            del a, k
            for j in graph.frees[i]:
                values[j] = None
        else:
            out = arg(args)
            if isinstance(out, list) and len(out) == 1:
                out = out[0]
            if not isinstance(out, torch.Tensor):
                raise GraphError(f"the graph's output is {type(out).__name__}, not one tensor of logits")
            return out
    raise GraphError("the graph has no output")  # unreachable: decode checked it


# Operators that move or create data without arithmetic: no FLOPs of their own.
_DATA_MOVEMENT = frozenset({
    "clone", "_to_copy", "copy", "copy_", "contiguous", "cat", "stack", "empty", "empty_like", "empty_strided",
    "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "new_zeros", "new_ones", "new_empty",
    "new_full", "arange", "scalar_tensor", "lift_fresh_copy", "index_select", "gather", "index", "masked_select",
    "embedding", "constant_pad_nd", "repeat", "fill", "fill_", "zero_", "_unsafe_view", "slice_scatter",
    "select_scatter", "index_put", "index_put_", "scatter", "masked_fill", "masked_fill_", "where"})


def op_flops(op: Any, args: list[Any], kwargs: dict[str, Any], out: Any) -> int:
    """FLOPs of one operator call: PyTorch's own formula where `torch.utils.flop_counter` has one
    (matmul, convolution, attention); otherwise one per element of the larger of its biggest tensor
    input and its output for arithmetic (so an MLP written as broadcast multiply + sum costs what
    its matmul would), and none for views and pure data movement."""
    from torch.utils.flop_counter import flop_registry

    packet = op.overloadpacket
    if packet in flop_registry:
        return int(flop_registry[packet](*args, **kwargs, out_val=out))
    if packet.__name__ in _DATA_MOVEMENT:
        return 0
    returns = op._schema.returns
    if returns and all(r.alias_info is not None and not r.alias_info.is_write for r in returns):
        return 0  # a view
    outs = out if isinstance(out, (tuple, list)) else [out]
    biggest_in = max((t.numel() for t in _tensors(args) + _tensors(list(kwargs.values()))), default=0)
    return max(biggest_in, sum(t.numel() for t in outs if isinstance(t, torch.Tensor)))


def _tensors(values: list[Any]) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    for v in values:
        if isinstance(v, torch.Tensor):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            found += _tensors(list(v))
    return found


def check_tensors(graph: Graph, state: dict[str, torch.Tensor], constants: dict[str, torch.Tensor]) -> None:
    if set(state) != set(graph.state):
        raise GraphError(f"the tensors sent ({len(state)}) are not the graph's state ({len(graph.state)})")
    if set(constants) != set(graph.constants):
        raise GraphError("the constants sent are not the graph's constants")


def replay(graph: Graph, state: dict[str, torch.Tensor], constants: dict[str, torch.Tensor],
           inputs: dict[str, torch.Tensor], batch: int,
           select: Callable[[dict[str, torch.Tensor], slice], dict[str, torch.Tensor]]) -> tuple[torch.Tensor, int]:
    """Logits for every row of `inputs`, in chunks of the traced batch (the last chunk padded by
    repeating its final row), and forward FLOPs per sample: the mean over every chunk, so a
    forward that is cheap only on the rows it was traced on is counted at its real cost."""
    check_tensors(graph, state, constants)
    n = next(iter(inputs.values())).shape[0]
    chunks: list[torch.Tensor] = []
    flops = [0]
    with torch.no_grad():
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            idx = torch.arange(start, start + batch).clamp(max=stop - 1)
            out = run(graph, state, constants, select(inputs, idx), flops)
            if out.shape[0] != batch:
                raise GraphError(f"the graph returned {out.shape[0]} rows for a batch of {batch}")
            chunks.append(out[: stop - start].float())
    return torch.cat(chunks), flops[0] // (batch * len(chunks))


def count_params(state: dict[str, torch.Tensor], constants: dict[str, torch.Tensor], literals: int = 0) -> int:
    """Every stored number the trained function reads besides its inputs: parameters, buffers,
    tensor constants and numbers written into the graph as values (`Graph.literals`). A
    candidate's process has the train labels from the start, so a buffer or constant could hold
    something learned before training began; none is exempt."""
    return sum(t.numel() for t in state.values()) + sum(t.numel() for t in constants.values()) + literals
