"""Behaviour of the hand-designed fusion zoo, each member loaded the way a standalone file is used:
its source `exec`-ed into a fresh namespace, with torch as the only dependency."""

from __future__ import annotations

import ast
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from autofusion.errors import AutoFusionError
from autofusion.zoo import ZOO_DESCRIPTIONS, ZOO_NAMES, zoo_path, zoo_source

ALLOWED_IMPORTS = {"torch", "torch.nn", "torch.nn.functional", "math"}
N_CLASSES = 3

# name -> {modality: per-sample shape}; the masked modalities get `<name>_mask` inputs.
CONFIGS: dict[str, dict[str, tuple[int, ...]]] = {
    "one_vector": {"a": (5,)},
    "two_vectors": {"a": (5,), "b": (3,)},
    "vector_and_tokens": {"a": (5,), "b": (4, 6)},
    "three_mixed": {"a": (3, 5), "b": (6,), "c": (4, 4)},
    "four": {"a": (5,), "b": (3, 4), "c": (7,), "d": (2, 3)},
}

# Parameter counts on the ScienceQA-like shape; the synthesizer's zoo genomes must reproduce them.
SCIENCEQA_SHAPES = {"image": (100, 256), "text": (64, 768)}
SCIENCEQA_PARAMS = {
    "concat": 65_925,
    "late": 66_314,
    "tfn": 327_171,
    "lmf": 267_209,
    "gmu": 201_349,
    "film": 119_365,
    "cross_attention": 91_013,
    "early_transformer": 180_933,
    "mult": 274_693,
}


def load_namespace(name: str) -> dict:
    namespace: dict = {"__name__": f"zoo_{name}"}
    exec(compile(zoo_source(name), f"<zoo:{name}>", "exec"), namespace)
    return namespace


def build(
    name: str, shapes: dict[str, tuple[int, ...]], num_classes: int = N_CLASSES
) -> torch.nn.Module:
    return load_namespace(name)["FusionModel"](shapes, num_classes)


def make_inputs(
    shapes: dict[str, tuple[int, ...]], batch: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random inputs; every token modality gets a mask whose first sample is padded (length 1)."""
    gen = torch.Generator().manual_seed(seed)
    inputs = {}
    for name, shape in shapes.items():
        inputs[name] = torch.randn(batch, *shape, generator=gen)
        if len(shape) == 2:
            lengths = torch.randint(1, shape[0] + 1, (batch,), generator=gen)
            lengths[0] = 1
            inputs[name + "_mask"] = torch.arange(shape[0]).unsqueeze(0) < lengths.unsqueeze(1)
    return inputs


def with_new_padding(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same inputs with every padded token replaced by large unrelated values."""
    changed = dict(inputs)
    for key, mask in inputs.items():
        if key.endswith("_mask"):
            name = key[: -len("_mask")]
            noise = 100.0 * torch.randn_like(inputs[name]) + 7.0
            changed[name] = torch.where(mask.unsqueeze(-1), inputs[name], noise)
    return changed


def without_masks(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in inputs.items() if not k.endswith("_mask")}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_forward_and_backward_give_finite_logits_and_gradients(name: str, config: str) -> None:
    shapes = CONFIGS[config]
    torch.manual_seed(0)
    model = build(name, shapes)
    model.train()
    for batch in (1, 3):
        model.zero_grad()
        logits = model(**make_inputs(shapes, batch))
        assert logits.shape == (batch, N_CLASSES)
        assert torch.isfinite(logits).all()
        logits.square().sum().backward()
        for pname, param in model.named_parameters():
            assert param.grad is not None, f"{name}: parameter {pname} is not used"
            assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient in {pname}"


@pytest.mark.parametrize("config", ["vector_and_tokens", "three_mixed", "four"])
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_padded_tokens_do_not_change_the_logits(name: str, config: str) -> None:
    shapes = CONFIGS[config]
    model = build(name, shapes).eval()
    inputs = make_inputs(shapes, batch=3)
    changed_inputs = with_new_padding(inputs)
    assert any(not torch.equal(inputs[k], changed_inputs[k]) for k in shapes)  # padding changed
    with torch.no_grad():
        reference = model(**inputs)
        changed = model(**changed_inputs)
    torch.testing.assert_close(changed, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_missing_masks_mean_every_token_is_real(name: str) -> None:
    shapes = CONFIGS["three_mixed"]
    model = build(name, shapes).eval()
    inputs = without_masks(make_inputs(shapes, batch=3))
    all_real = dict(inputs)
    for key, shape in shapes.items():
        if len(shape) == 2:
            all_real[key + "_mask"] = torch.ones(3, shape[0], dtype=torch.bool)
    padded = make_inputs(shapes, batch=3)  # same values, but with padding masks
    with torch.no_grad():
        unmasked = model(**inputs)
        torch.testing.assert_close(unmasked, model(**all_real), rtol=0, atol=1e-5)
        assert not torch.allclose(unmasked, model(**padded), atol=1e-4)  # masks do matter


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_a_sample_with_only_padding_stays_finite(name: str) -> None:
    shapes = CONFIGS["three_mixed"]
    torch.manual_seed(0)
    model = build(name, shapes).train()
    inputs = make_inputs(shapes, batch=3)
    inputs["a_mask"][1] = False
    inputs["c_mask"][2] = False
    logits = model(**inputs)
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_initialisation_follows_the_torch_seed(name: str) -> None:
    shapes = CONFIGS["vector_and_tokens"]
    states = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        states.append(build(name, shapes).state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert any(not torch.equal(states[0][k], states[2][k]) for k in states[0])


def synthetic_problem(
    label_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n: int, seed: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Two vector modalities of dimension 2; the label is a function of one projection of each."""
    gen = torch.Generator().manual_seed(seed)
    w, v = torch.tensor([1.0, -0.5]), torch.tensor([0.3, 1.0])
    a, b = torch.randn(n, 2, generator=gen), torch.randn(n, 2, generator=gen)
    return {"a": a, "b": b}, label_fn(a @ w / w.norm(), b @ v / v.norm()).long()


def xor_label(sa: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
    return (sa > 0) ^ (sb > 0)  # each modality alone predicts it at chance (50 %)


def sum_label(sa: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
    return sa + sb > 0  # each modality alone predicts it at most 75 % of the time


def held_out_accuracy(name: str, label_fn: Callable, steps: int = 80) -> float:
    torch.manual_seed(0)
    x_train, y_train = synthetic_problem(label_fn, 128, seed=0)
    x_test, y_test = synthetic_problem(label_fn, 512, seed=1)
    model = build(name, {"a": (2,), "b": (2,)}, num_classes=2)
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(**x_train), y_train)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        return (model(**x_test).argmax(dim=-1) == y_test).float().mean().item()


@pytest.mark.parametrize("name", [n for n in ZOO_NAMES if n != "late"])
def test_interaction_members_learn_an_xor_of_two_modalities(name: str) -> None:
    # A model that ignores either modality stays at 50 %; the members reach ~0.88-0.96 (4 seeds).
    assert held_out_accuracy(name, xor_label) >= 0.8


def test_late_fusion_learns_a_label_that_needs_both_modalities_additively() -> None:
    # Either modality alone caps at 75 %; late fusion reaches ~0.97.
    assert held_out_accuracy("late", sum_label) >= 0.88


def test_late_fusion_cannot_learn_an_xor() -> None:
    # Averaged per-modality logits cannot express a product of modalities, so the XOR
    # test above discriminates.
    assert held_out_accuracy("late", xor_label) <= 0.65


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_scienceqa_parameter_counts_are_pinned_and_small(name: str) -> None:
    model = build(name, SCIENCEQA_SHAPES, num_classes=5)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params <= 2_000_000
    assert n_params == SCIENCEQA_PARAMS[name]


def test_tfn_fusion_tensor_stays_within_its_bound() -> None:
    namespace = load_namespace("tfn")
    factor_dim, bound = namespace["factor_dim"], namespace["FUSED_MAX"]
    for n_modalities in range(1, 13):
        d = factor_dim(n_modalities)
        assert 1 <= d <= namespace["HIDDEN"]
        assert (d + 1) ** n_modalities <= bound
        assert d == namespace["HIDDEN"] or (d + 2) ** n_modalities > bound  # largest such d
    with pytest.raises(ValueError, match="13 modalities"):
        factor_dim(13)
    model = build("tfn", SCIENCEQA_SHAPES, num_classes=5)
    assert model.head[0].in_features == 4096


def test_unknown_zoo_name_lists_the_valid_names() -> None:
    with pytest.raises(AutoFusionError) as excinfo:
        zoo_source("transformer_xl")
    message = str(excinfo.value)
    assert "transformer_xl" in message
    assert all(name in message for name in ZOO_NAMES)


def test_zoo_names_descriptions_and_files_agree() -> None:
    assert ZOO_NAMES == (
        "concat",
        "late",
        "tfn",
        "lmf",
        "gmu",
        "film",
        "cross_attention",
        "early_transformer",
        "mult",
    )
    assert set(ZOO_DESCRIPTIONS) == set(ZOO_NAMES)
    shipped = {p.stem for p in zoo_path("concat").parent.glob("*.py")} - {"__init__"}
    assert shipped == set(ZOO_NAMES)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_zoo_files_are_standalone_candidates(name: str) -> None:
    tree = ast.parse(zoo_source(name))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= ALLOWED_IMPORTS, f"{name} imports {sorted(imported - ALLOWED_IMPORTS)}"
    assert ast.get_docstring(tree), f"{name} has no module docstring"
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert "FusionModel" in classes
