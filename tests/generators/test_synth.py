"""Behaviour of the offline program synthesizer: genomes, rendering, operators and the generator."""

from __future__ import annotations

import ast
import difflib
import json
import random
from dataclasses import replace

import pytest
import torch

from autofusion.errors import AutoFusionError
from autofusion.generators.base import FAMILIES, GenerationFailed, GenerationRequest, Parent
from autofusion.generators.synth import (
    ZOO_PRESETS, Encoder, Fusion, Genome, SynthGenerator, crossover, mutate, preset_genome,
    random_genome, render, render_dict,
)
from autofusion.generators.synth.genome import ATTENTION_FUSIONS, FUSIONS, POOLINGS
from autofusion.generators.synth.operators import FAMILY_FUSIONS, flatten
from autofusion.tasks.format import TaskSpec

ALLOWED_IMPORTS = {"torch", "torch.nn", "torch.nn.functional", "math"}
CONFIGS: list[dict[str, tuple[int, ...]]] = [
    {"a": (12,), "b": (20,)},
    {"a": (10,), "t": (7, 16)},
    {"x": (5, 12), "y": (9,), "z": (6, 8)},
]
SCIENCEQA_SHAPES = {"image": (100, 256), "text": (64, 768)}
TASK = TaskSpec(name="toy", num_classes=4, modalities={"a": (10,), "t": (7, 16)})


def model_class(code: str) -> type:
    namespace: dict[str, object] = {}
    exec(compile(code, "<candidate>", "exec"), namespace)
    return namespace["FusionModel"]  # type: ignore[return-value]


def n_params(code: str, shapes: dict[str, tuple[int, ...]]) -> int:
    with torch.device("meta"):  # count without allocating or initialising
        model = model_class(code)(shapes, 4)
    return sum(p.numel() for p in model.parameters())


def make_inputs(shapes: dict[str, tuple[int, ...]], batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random features; token modalities get masks with trailing padding (row 0 always padded)."""
    gen = torch.Generator().manual_seed(seed)
    inputs: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        inputs[name] = torch.randn(batch, *shape, generator=gen)
        if len(shape) == 2:
            real = torch.randint(1, shape[0] + 1, (batch,), generator=gen)
            real[0] = shape[0] - 2
            inputs[name + "_mask"] = torch.arange(shape[0])[None, :] < real[:, None]
    return inputs


def draws(n: int, seed: int = 0) -> list[Genome]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        genome = random_genome(rng, (None, *FAMILIES)[i % (len(FAMILIES) + 1)])
        if i % 3 == 1:
            genome = mutate(genome, rng, "large")
        elif i % 3 == 2:
            genome = mutate(genome, rng, "small")
        out.append(genome)
    return out


# --- genome -------------------------------------------------------------------------------------

def test_genomes_round_trip_through_json_dicts() -> None:
    for genome in draws(60) + list(ZOO_PRESETS.values()):
        data = json.loads(json.dumps(genome.to_dict()))
        assert Genome.from_dict(data) == genome


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d["fusion"].update(kernel=3), "fusion.kernel"),
        (lambda d: d["encoder"].update(kind="lstm"), "encoder.kind"),
        (lambda d: d.update(width=65), "width"),
        (lambda d: d.update(heads=3), "heads"),
        (lambda d: d["fusion"].update(op="magic"), "fusion.op"),
        (lambda d: d["fusion"].update(depth=0), "fusion.depth"),
        (lambda d: d["head"].update(depth="2"), "head.depth"),
        (lambda d: d.update(encoder_overrides={"first": {"kind": "mlp", "layers": 1}}), "encoder_overrides"),
        (lambda d: d.update(fusion="concat"), "fusion"),
        (lambda d: d.update(pool="cls"), "pool"),  # cls needs an attention fusion
        (lambda d: d.update(width=256, fusion={**d["fusion"], "op": "mult"}), "width"),
    ],
)
def test_from_dict_rejects_bad_genomes_naming_the_field(change, field: str) -> None:
    data = Genome().to_dict()
    change(data)
    with pytest.raises(AutoFusionError, match=f"'{field}"):
        Genome.from_dict(data)


def test_default_genome_is_valid_and_from_dict_fills_defaults() -> None:
    assert Genome.from_dict({"width": 96}) == Genome(width=96)


# --- rendering ----------------------------------------------------------------------------------

def test_rendering_is_stable_and_imports_only_the_allow_list() -> None:
    for genome in draws(40, seed=1):
        code = render(genome)
        assert code == render(Genome.from_dict(genome.to_dict()))
        tree = ast.parse(code)
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert imported <= ALLOWED_IMPORTS, imported
        assert ast.get_docstring(tree)


def test_rendered_code_holds_only_the_paths_the_genome_uses() -> None:
    concat = render(ZOO_PRESETS["concat"])
    for absent in ("MultiheadAttention", "AttentionPool", "masked_max", "make_encoder", "factor_dim",
                   "Transformer", "sinusoid", "if position"):
        assert absent not in concat
    mult = render(ZOO_PRESETS["mult"])
    assert "CrossModalBlock" in mult and "sinusoid" in mult and "CrossAttention(" not in mult
    assert "AttentionPool" in render(replace(ZOO_PRESETS["mult"], pool="attention"))


def test_random_genomes_run_forward_and_backward_on_several_shape_configs() -> None:
    genomes = draws(300, seed=2)
    classes = [model_class(render(g)) for g in genomes]  # every draw renders to importable code
    first_of_op = {g.fusion.op: i for i, g in reversed(list(enumerate(genomes)))}
    sample = sorted(set(range(0, 300, 50)) | set(first_of_op.values()))
    assert {genomes[i].fusion.op for i in sample} == set(FUSIONS)
    for i in sample:  # a sample runs forward + backward on each shape configuration in turn
        shapes = CONFIGS[i % 3]
        torch.manual_seed(i)
        model = classes[i](shapes, 4)
        out = model(**make_inputs(shapes, batch=2, seed=i))
        assert out.shape == (2, 4)
        assert torch.isfinite(out).all()
        out.square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def test_widths_cover_32_to_256_and_scienceqa_models_stay_small() -> None:
    genomes = draws(120, seed=3)
    widths = {g.width for g in genomes}
    assert min(widths) == 32 and max(widths) == 256
    sizes = [n_params(render(g), SCIENCEQA_SHAPES) for g in genomes]
    assert max(sizes) < 4_000_000, max(sizes)


@pytest.mark.parametrize("op", FUSIONS)
@pytest.mark.parametrize("pool", POOLINGS)
def test_padded_tokens_do_not_change_eval_output(op: str, pool: str) -> None:
    encoder = Encoder("transformer", 1) if pool == "max" else Encoder("linear")
    genome = Genome(width=32, encoder=encoder, encoder_overrides=((1, Encoder("mlp", 1)),), pool=pool,
                    positions="learned", fusion=Fusion(op, query=1))
    if pool == "cls" and op not in ATTENTION_FUSIONS:
        with pytest.raises(AutoFusionError):
            genome.validate()
        return
    shapes = {"a": (6, 8), "b": (5,), "c": (4, 10)}
    torch.manual_seed(0)
    model = model_class(render(genome))(shapes, 3).eval()
    inputs = make_inputs(shapes, batch=4)
    noisy = dict(inputs)
    for name in ("a", "c"):  # new values only where tokens are padding
        pad = ~inputs[name + "_mask"]
        noisy[name] = torch.where(pad[..., None], 100 * torch.randn_like(inputs[name]), inputs[name])
    with torch.no_grad():
        clean, changed = model(**inputs), model(**noisy)
    assert torch.allclose(clean, changed, atol=1e-4), (clean - changed).abs().max()


# --- operators ----------------------------------------------------------------------------------

def test_mutations_always_change_the_genome_and_small_changes_less_than_large() -> None:
    rng = random.Random(4)
    diffs = {"small": [], "large": []}
    genes = {"small": [], "large": []}
    for parent in draws(60, seed=5):
        before = render(parent).splitlines()
        for strength in ("small", "large"):
            child = mutate(parent, rng, strength)
            assert child != parent
            after = render(child).splitlines()
            changed = sum(1 for line in difflib.unified_diff(before, after, n=0)
                          if line[:1] in "+-" and line[:3] not in ("+++", "---"))
            diffs[strength].append(changed)
            a, b = flatten(parent.to_dict()), flatten(child.to_dict())
            genes[strength].append(sum(a.get(k) != b.get(k) for k in set(a) | set(b)))
    assert sum(diffs["small"]) < 0.6 * sum(diffs["large"]), (sum(diffs["small"]), sum(diffs["large"]))
    assert max(genes["small"]) <= 3


def test_large_mutation_with_a_family_moves_toward_that_family() -> None:
    rng = random.Random(6)
    for family in ("attention", "tensor", "gating", "pooling"):
        hits = sum(mutate(ZOO_PRESETS["concat"], rng, "large", family).fusion.op in FAMILY_FUSIONS[family]
                   for _ in range(40))
        assert hits >= 20, (family, hits)


def test_small_mutation_keeps_the_fusion_operator() -> None:
    rng = random.Random(7)
    for parent in draws(30, seed=8):
        assert mutate(parent, rng, "small").fusion.op == parent.fusion.op


def test_crossover_takes_genes_from_both_parents() -> None:
    rng = random.Random(9)
    a, b = ZOO_PRESETS["gmu"], replace(ZOO_PRESETS["mult"], width=128, dropout=0.2, activation="relu")
    fa, fb = flatten(a.to_dict()), flatten(b.to_dict())
    for _ in range(20):
        child = flatten(crossover(a, b, rng).to_dict())
        differing = [k for k in fa if fa[k] != fb[k]]
        from_a = [k for k in differing if child[k] == fa[k]]
        from_b = [k for k in differing if child[k] == fb[k]]
        assert from_a and from_b


def test_operators_are_deterministic_under_the_same_seed() -> None:
    def run(seed: int) -> list[dict]:
        rng = random.Random(seed)
        g = random_genome(rng)
        return [g.to_dict(), mutate(g, rng, "small").to_dict(), mutate(g, rng, "large", "depth").to_dict(),
                crossover(g, random_genome(rng), rng).to_dict()]
    assert run(10) == run(10)
    assert run(10) != run(11)


# --- generator ----------------------------------------------------------------------------------

def request(operator: str, family: str | None = None, parents: tuple[Parent, ...] = (), seed: int = 0):
    return GenerationRequest(task=TASK, operator=operator, family=family, instruction="", parents=parents,
                             seed=seed)


def parent(name: str, pid: int = 1) -> Parent:
    return Parent(id=pid, code=render_dict(preset_genome(name)), genome=preset_genome(name))


def test_same_request_gives_same_code_and_other_seeds_differ() -> None:
    gen = SynthGenerator()
    first = gen.generate(request("fresh", seed=3))
    assert first == gen.generate(request("fresh", seed=3))
    assert first.origin == "synth" and render_dict(first.genome) == first.code
    others = {gen.generate(request("fresh", seed=s)).code for s in range(4, 10)}
    assert len(others) == 6


def test_generator_applies_mutations_to_the_parent_genome() -> None:
    gen = SynthGenerator()
    small = gen.generate(request("mutate_small", parents=(parent("gmu", 7),), seed=1))
    assert small.notes.startswith("mutate_small of #7:") and "->" in small.notes
    assert Genome.from_dict(small.genome).fusion.op == "gating"
    assert small.genome != preset_genome("gmu")
    ops = {Genome.from_dict(gen.generate(request("mutate_large", "attention", (parent("gmu"),), s)).genome)
           .fusion.op for s in range(12)}
    assert ops & set(ATTENTION_FUSIONS)


def test_generator_crossover_uses_both_parents() -> None:
    gen = SynthGenerator()
    out = gen.generate(request("crossover", parents=(parent("concat", 1), parent("mult", 2)), seed=5))
    assert out.notes.startswith("crossover of #1 and #2")
    child = flatten(out.genome)
    a, b = flatten(preset_genome("concat")), flatten(preset_genome("mult"))
    assert any(child[k] == a[k] != b[k] for k in a) and any(child[k] == b[k] != a[k] for k in a)


def test_crossover_with_a_family_keeps_the_fusion_of_that_family() -> None:
    gen = SynthGenerator()
    for seed in range(6):
        out = gen.generate(request("crossover", "attention", (parent("concat", 1), parent("mult", 2)), seed))
        assert Genome.from_dict(out.genome).fusion.op == "mult"


def test_fresh_with_a_family_draws_from_it() -> None:
    gen = SynthGenerator()
    ops = [Genome.from_dict(gen.generate(request("fresh", "tensor", seed=s)).genome).fusion.op for s in range(20)]
    assert sum(op in FAMILY_FUSIONS["tensor"] for op in ops) >= 10


def test_parent_without_genome_falls_back_to_fresh_and_says_so() -> None:
    llm_parent = Parent(id=3, code="class FusionModel: ...", genome=None)
    out = SynthGenerator().generate(request("mutate_small", "gating", (llm_parent,), seed=2))
    assert "no parent genome" in out.notes and "without a genome" in out.notes
    Genome.from_dict(out.genome)


def test_validator_rejections_are_retried_then_fail() -> None:
    calls: list[str] = []

    def reject_twice(code: str) -> str | None:
        calls.append(code)
        return "smoke run failed: boom" if len(calls) <= 2 else None

    out = SynthGenerator().generate(request("fresh", seed=1), validate=reject_twice)
    assert out.attempts == 3 and out.code == calls[-1] and "rejected" in out.notes
    with pytest.raises(GenerationFailed, match="boom"):
        SynthGenerator(max_attempts=2).generate(request("fresh", seed=1), validate=lambda code: "boom")


def test_unknown_operator_and_preset_are_refused() -> None:
    with pytest.raises(AutoFusionError, match="operator"):
        SynthGenerator().generate(request("rewrite"))
    with pytest.raises(AutoFusionError, match="nope"):
        preset_genome("nope")
