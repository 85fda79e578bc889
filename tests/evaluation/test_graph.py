"""The trusted replay: traced graphs reproduce every zoo member, decoding refuses anything that is not
an ATen operator, and the evaluator's params, FLOPs and metrics come from the replay, so a candidate
that patches its own counters or forges its predictions is measured (or failed) honestly."""

from __future__ import annotations

import json

import pytest
import torch

from autofusion.evaluation import ProxyEvaluator, Status, TrainSettings, graph
from autofusion.evaluation.evaluator import Budgets
from autofusion.evaluation.trainer import _select, load_candidate
from autofusion.zoo import ZOO_NAMES, zoo_source
from helpers import CONCAT

SHAPES = {"a": (6,), "b": (4, 5)}
SETTINGS = TrainSettings(epochs=2, batch_size=32, timeout_s=60, threads=1)  # 1 thread leaves a core for replaying ahead


def _inputs(n: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 5, (n,), generator=gen)
    return {"a": torch.randn(n, 6, generator=gen), "b": torch.randn(n, 4, 5, generator=gen),
            "b_mask": torch.arange(4)[None, :] < lengths[:, None]}


def _roundtrip(model: torch.nn.Module, inputs: dict[str, torch.Tensor], batch: int):
    traced = graph.trace(model, _select(inputs, slice(0, batch)))
    program = graph.decode(traced.graph)
    return traced, graph.replay(program, graph.model_state(model), traced.constants, inputs, batch, _select)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_every_zoo_member_replays_to_its_own_logits(name: str) -> None:
    torch.manual_seed(0)
    model = load_candidate(zoo_source(name))(dict(SHAPES), 3).eval()
    inputs = _inputs(50)  # 50 rows at batch 16: the last chunk is padded
    with torch.no_grad():
        eager = model(**_select(inputs, slice(0, 50)))
    traced, (logits, flops) = _roundtrip(model, inputs, 16)
    assert torch.allclose(logits, eager, atol=1e-5), (logits - eager).abs().max()
    assert graph.count_params(graph.model_state(model), traced.constants) >= sum(p.numel() for p in model.parameters())
    assert flops > 0


def test_buffers_and_tensor_constants_count_as_params() -> None:
    class WithState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(6, 3)  # 21 parameters
            self.register_buffer("scale", torch.full((6,), 2.0))  # 6 stored numbers

        def forward(self, a, b, b_mask):
            bias = torch.tensor([0.5, -0.5, 0.0])  # a constant made inside forward: 3 more
            return self.head(a * self.scale) + bias

    model = WithState()
    traced, (logits, _) = _roundtrip(model, _inputs(8), 8)
    assert graph.count_params(graph.model_state(model), traced.constants) == 21 + 6 + 3
    assert torch.allclose(logits, model(**_inputs(8)))


def _doc(nodes: list) -> bytes:
    return json.dumps({"inputs": ["a"], "state": [], "constants": [], "nodes": nodes}).encode()


@pytest.mark.parametrize("target, why", [
    ("builtins.eval", "not an ATen operator"),
    ("aten.from_file.default", "not allowed"),
    ("aten.no_such_op.default", "does not exist"),
    ("torch.ops.aten.add.Tensor", "not an ATen operator"),
])
def test_decode_refuses_anything_but_aten_operators(target: str, why: str) -> None:
    nodes = [{"op": "input", "name": "a"}, {"op": "call", "target": target, "args": [{"n": 0}], "kwargs": {}},
             {"op": "output", "args": [{"n": 1}]}]
    with pytest.raises(graph.GraphError, match=why):
        graph.decode(_doc(nodes))


@pytest.mark.parametrize("nodes, why", [
    ([{"op": "input", "name": "a"}, {"op": "call", "target": "aten.relu.default", "args": [{"n": 2}], "kwargs": {}},
      {"op": "output", "args": [{"n": 1}]}], "cannot decode"),  # a forward reference
    ([{"op": "input", "name": "secret"}, {"op": "output", "args": [{"n": 0}]}], "undeclared"),
    ([{"op": "input", "name": "a"}], "exactly one output"),
    ([{"op": "input", "name": "a"}, {"op": "call", "target": "aten.relu.default", "args": [[[[[[[[{"n": 0}]]]]]]]],
      "kwargs": {}}, {"op": "output", "args": [{"n": 1}]}], "nested too deeply"),
    ([{"op": "input", "name": "a"}, {"op": "exec", "target": "x"}, {"op": "output", "args": [{"n": 0}]}], "unknown op"),
])
def test_decode_refuses_malformed_graphs(nodes: list, why: str) -> None:
    with pytest.raises(graph.GraphError, match=why):
        graph.decode(_doc(nodes))


def test_replay_refuses_tensors_that_are_not_the_graphs_state() -> None:
    model = torch.nn.Linear(6, 3)
    traced = graph.trace(model, {"input": torch.randn(4, 6)})
    program = graph.decode(traced.graph)
    state = graph.model_state(model) | {"hidden": torch.zeros(1000)}
    with pytest.raises(graph.GraphError, match="not the graph's state"):
        graph.replay(program, state, traced.constants, {"input": torch.randn(4, 6)}, 4, lambda x, i: {"input": x["input"][i]})


# ------------------------------------------------------------------------------ through the evaluator

LIAR = CONCAT.replace('''        self.mlp = nn.Sequential(''', '''        import sys
        sys.modules["autofusion.evaluation.trainer"]._NUMEL = lambda p: 0
        self.mlp = nn.Sequential(''')

FORGER = CONCAT.replace('''        self.mlp = nn.Sequential(''', '''        import sys
        tr = sys.modules["autofusion.evaluation.trainer"]
        real = tr.predict
        tr.predict = lambda model, inputs, mask: real(model, inputs, mask) * 0 + 1
        self.mlp = nn.Sequential(''')

STATEFUL = CONCAT.replace('''        parts = []''', '''        self.calls = getattr(self, "calls", 0) + 1  # Python-side state: the trace bakes in one value
        if not self.training:
            return self.mlp(torch.cat([inputs["a"], inputs["b"].mean(1)], -1)) * (1.0 + self.calls)
        parts = []''')


@pytest.fixture(scope="module", params=[True, False], ids=["replay-ahead", "replay-at-end"])
def unguarded(tiny_task, shared_sandbox, request) -> ProxyEvaluator:
    """The runtime alone: no static policy, so candidate code may patch whatever is in its process;
    the replay process replays epochs while the candidate trains, or only the best one at the end."""
    evaluator = ProxyEvaluator(tiny_task, sandbox=shared_sandbox, static_policy=False)
    evaluator.replay_ahead = request.param
    if evaluator._core_to_spare(SETTINGS) != request.param:
        pytest.skip("one core: an evaluation leaves none to spare")
    return evaluator


def test_params_and_flops_come_from_the_replay_not_the_child(unguarded: ProxyEvaluator, evaluator: ProxyEvaluator) -> None:
    honest = evaluator.evaluate(CONCAT, SETTINGS)
    assert honest.ok and honest.params == (6 + 5) * 32 + 32 + 32 * 2 + 2 + 1  # + the 1.0 of clamp(min=1.0)
    smoke = unguarded.smoke(LIAR, SETTINGS)
    assert smoke.params == 0  # the smoke run reports the child's claim, and this child lies
    lied = unguarded.evaluate(LIAR, SETTINGS)
    assert lied.ok, lied.error
    assert (lied.params, lied.flops) == (honest.params, honest.flops)
    assert (lied.val_accuracy, lied.test_accuracy) == (honest.val_accuracy, honest.test_accuracy)


def test_a_budget_is_enforced_on_the_measured_count(tiny_task, shared_sandbox) -> None:
    budgeted = ProxyEvaluator(tiny_task, sandbox=shared_sandbox, static_policy=False, budgets=Budgets(max_params=100))
    result = budgeted.evaluate(LIAR, SETTINGS)
    assert result.status is Status.REJECTED and result.stage == "budget", (result.status, result.error)
    assert "measured" in (result.error or "")


def test_forged_predictions_fail_verification(unguarded: ProxyEvaluator) -> None:
    result = unguarded.evaluate(FORGER, SETTINGS)
    assert result.status is Status.FAILED and result.stage == "verify", (result.status, result.stage, result.error)
    assert result.val_accuracy is None and result.test_accuracy is None


def test_a_forward_that_changes_between_calls_fails_verification_with_the_reason(evaluator: ProxyEvaluator) -> None:
    result = evaluator.evaluate(STATEFUL, SETTINGS)
    assert result.status is Status.FAILED and result.stage == "verify", (result.status, result.stage, result.error)
    assert "same thing on every call" in (result.error or "")


def test_the_smoke_run_traces_so_untraceable_code_is_caught_before_training(unguarded: ProxyEvaluator) -> None:
    noisy = CONCAT.replace('''        return self.mlp(torch.cat(parts, dim=-1))''', '''        gen = torch.Generator().manual_seed(0)
        return self.mlp(torch.cat(parts, dim=-1)) + torch.randn(2, generator=gen)''')
    smoke = unguarded.smoke(noisy, SETTINGS)  # the static policy would refuse `manual_seed` first
    assert smoke.status is Status.REJECTED and smoke.stage == "trace", (smoke.status, smoke.stage, smoke.error)
    assert "Generator" in (smoke.error or "")


# ------------------------------------------------------------------------------ ways around the count
# (from an outside red-team pass of the replay)

class _BroadcastMLP(torch.nn.Module):
    """A 6 -> 64 -> 3 MLP written without matmul: broadcast multiply, then sum."""

    def __init__(self) -> None:
        super().__init__()
        self.w1, self.w2 = torch.nn.Parameter(torch.randn(6, 64)), torch.nn.Parameter(torch.randn(64, 3))

    def forward(self, a, b, b_mask):
        h = (a.unsqueeze(2) * self.w1.unsqueeze(0)).sum(1).relu()
        return (h.unsqueeze(2) * self.w2.unsqueeze(0)).sum(1)


class _MatmulMLP(_BroadcastMLP):
    def forward(self, a, b, b_mask):
        return (a @ self.w1).relu() @ self.w2


def test_arithmetic_without_matmul_is_counted_like_the_matmul() -> None:
    _, (_, broadcast) = _roundtrip(_BroadcastMLP(), _inputs(32), 16)
    _, (_, matmul) = _roundtrip(_MatmulMLP(), _inputs(32), 16)
    assert matmul >= 2 * (6 * 64 + 64 * 3)
    assert broadcast >= matmul  # torch's counter alone gave the broadcast version 0


class _CheapOnTracedRows(torch.nn.Module):
    """Heavy only for rows whose first feature is positive: the trace batch is made all negative."""

    def __init__(self) -> None:
        super().__init__()
        self.light, self.heavy = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)

    def forward(self, a, b, b_mask):
        heavy = self.heavy(a.repeat(1, 200).view(-1, 200, 6)).mean(1)
        return torch.where(a[:, :1] > 0, heavy, self.light(a))


def test_flops_are_the_mean_over_every_row_not_the_traced_batch() -> None:
    model, inputs = _CheapOnTracedRows(), _inputs(64)
    traced = graph.trace(model, _select(inputs, slice(0, 16)))
    _, flops = graph.replay(graph.decode(traced.graph), graph.model_state(model), traced.constants, inputs, 16, _select)
    assert flops >= 200 * 2 * 6 * 3  # the heavy path runs (and is counted) on every chunk


class _NumbersInTheGraph(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = [0.25 * i for i in range(50)]  # learned numbers kept as Python floats

    def forward(self, a, b, b_mask):
        out = a[:, :3] * 0
        for v in self.table:
            out = out + torch.full((), v)
        return out


def test_numbers_written_into_the_graph_count_as_params() -> None:
    model = _NumbersInTheGraph()
    traced = graph.trace(model, _select(_inputs(8), slice(0, 8)))
    program = graph.decode(traced.graph)
    assert program.literals >= 50
    assert graph.count_params(graph.model_state(model), traced.constants, program.literals) >= 50


class _Stateful(torch.nn.Module):
    """In-place arithmetic, operators returning tuples and lists, and a plain tensor attribute that
    forward mutates: the recorder must replay what eager computed, on every call."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(6, 6)
        self.offset = torch.zeros(6)  # not a buffer: a constant copied when the trace first sees it

    def forward(self, a, b, b_mask):
        h = self.proj(a)
        h.mul_(2).add_(self.offset)
        first, second = torch.chunk(h, 2, dim=1)  # a list of views
        peak, _ = b.max(dim=1)  # a tuple out of one operator
        self.offset.add_(0.0)  # in place on the constant: the replay starts from its traced copy
        return torch.cat([first + second, peak[:, :3].sum(1, keepdim=True)], dim=1)[:, :3]


def test_in_place_ops_tuples_and_constants_replay_to_eager() -> None:
    torch.manual_seed(0)
    model, inputs = _Stateful().eval(), _inputs(40)
    with torch.no_grad():
        eager = model(**_select(inputs, slice(0, 40)))
    traced, (logits, _) = _roundtrip(model, inputs, 16)
    assert torch.allclose(logits, eager, atol=1e-6)
    assert set(traced.constants) == {"_tensor_constant0"} and traced.constants["_tensor_constant0"].shape == (6,)


def test_tracing_switches_off_the_fused_transformer_fast_path() -> None:
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer, self.head = layer, torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.layer(x).mean(1))

    model, x = Encoder(), torch.randn(4, 5, 8)
    assert torch.backends.mha.get_fastpath_enabled()
    traced = graph.trace(model, {"x": x})
    assert torch.backends.mha.get_fastpath_enabled()  # restored
    targets = {n["target"] for n in json.loads(traced.graph)["nodes"] if n["op"] == "call"}
    assert not any("transformer_encoder_layer" in t or "native_multi_head" in t for t in targets), targets
    _, flops = graph.replay(graph.decode(traced.graph), graph.model_state(model), traced.constants, {"x": x}, 4,
                            lambda inp, i: {"x": inp["x"][i]})
    per_token_matmuls = 2 * (8 * 24 + 8 * 8 + 8 * 16 + 16 * 8)  # qkv, out-projection, feed-forward
    assert flops >= 5 * per_token_matmuls


@pytest.mark.parametrize("name", ["gmu", "mult"])
def test_the_replay_drops_each_value_after_its_last_reader(name: str) -> None:
    model = load_candidate(zoo_source(name))(SHAPES, 3).eval()
    program = graph.decode(graph.trace(model, _select(_inputs(8), slice(0, 8))).graph)
    readers: dict[int, list[int]] = {}

    def refs(value, at: int) -> None:
        if isinstance(value, graph._Ref):
            readers.setdefault(int(value), []).append(at)
        elif isinstance(value, (list, dict)):
            for v in (value.values() if isinstance(value, dict) else value):
                refs(v, at)

    for i, (_, _, args, kwargs) in enumerate(program.nodes):
        refs(args, i)
        refs(kwargs or {}, i)
    dropped = {j: i for i, js in enumerate(program.frees) for j in js}
    assert len(dropped) == sum(len(js) for js in program.frees)  # each value once
    assert dropped == {j: max(at) for j, at in readers.items()}  # by its last reader, never before


def _recording(evaluator: ProxyEvaluator, monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    """(epoch, epochs judged so far) of every replay request, and the epoch each verification used."""
    requested: list[tuple[int, int]] = []
    verified: list[int] = []
    real_request, real_verify = evaluator._request, evaluator._verify

    def request(ch, deadline, epoch, tensors, state):
        requested.append((epoch, state.epochs_run))
        real_request(ch, deadline, epoch, tensors, state)

    def verify(ch, deadline, state):
        real_verify(ch, deadline, state)
        verified.append(state.replayed[0])

    monkeypatch.setattr(evaluator, "_request", request)
    monkeypatch.setattr(evaluator, "_verify", verify)
    return requested, verified


def test_replaying_ahead_needs_a_core_the_evaluations_threads_leave_idle(tiny_task, shared_sandbox, monkeypatch) -> None:
    from autofusion.evaluation import evaluator as module

    monkeypatch.setattr(module, "available_cores", lambda: 8)
    one = ProxyEvaluator(tiny_task, sandbox=shared_sandbox)
    four = ProxyEvaluator(tiny_task, sandbox=shared_sandbox, parallel=4)
    assert one._core_to_spare(SETTINGS.with_(threads=1)) and one._core_to_spare(SETTINGS.with_(threads=7))
    assert not one._core_to_spare(SETTINGS.with_(threads=8)) and not one._core_to_spare(SETTINGS.with_(threads=0))
    assert four._core_to_spare(SETTINGS.with_(threads=1)) and not four._core_to_spare(SETTINGS.with_(threads=2))
    one.replay_ahead = False  # e.g. a Ray actor: the node's cores are packed with actors
    assert not one._core_to_spare(SETTINGS.with_(threads=1))


def test_with_a_core_to_spare_epochs_are_replayed_while_training_and_the_best_is_verified(
        tiny_task, shared_sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    from autofusion.evaluation.evaluator import available_cores

    if available_cores() < 2:
        pytest.skip("one core: an evaluation leaves none to spare")
    settings = SETTINGS.with_(epochs=5, threads=1)
    ahead = ProxyEvaluator(tiny_task, sandbox=shared_sandbox)
    assert ahead._core_to_spare(settings)  # the sandbox has spare cores by default
    requested, verified = _recording(ahead, monkeypatch)
    result = ahead.evaluate(CONCAT, settings)
    assert result.ok, result.error
    assert requested[0] == (0, 0)  # epoch 0 went to the replay process before its val logits were read
    assert [e for e, _ in requested] == sorted({e for e, _ in requested})  # each epoch at most once, in order
    assert verified == [result.best_epoch]
    at_end = ProxyEvaluator(tiny_task, sandbox=shared_sandbox)
    at_end.replay_ahead = False
    requested, verified = _recording(at_end, monkeypatch)
    same = at_end.evaluate(CONCAT, settings)
    assert requested == [(same.best_epoch, same.epochs_run)] and verified == [same.best_epoch]
    assert (same.val_accuracy, same.test_accuracy, same.params, same.flops, same.best_epoch) == (
        result.val_accuracy, result.test_accuracy, result.params, result.flops, result.best_epoch)
