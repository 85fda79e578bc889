"""The synthesizer's zoo presets are twins of the zoo files: same parameter count on every shape."""

from __future__ import annotations

import pytest
import torch

from autofusion.generators.synth import ZOO_PRESETS, preset_genome, render_dict
from autofusion.zoo import ZOO_NAMES, zoo_source

CONFIGS: dict[str, dict[str, tuple[int, ...]]] = {
    "two_vectors": {"a": (12,), "b": (20,)},
    "vector_and_tokens": {"a": (10,), "t": (7, 16)},
    "three_with_tokens": {"x": (5, 12), "y": (9,), "z": (6, 8)},
    "scienceqa": {"image": (100, 256), "text": (64, 768)},
}


def n_params(code: str, shapes: dict[str, tuple[int, ...]]) -> int:
    namespace: dict[str, object] = {}
    exec(compile(code, "<candidate>", "exec"), namespace)
    with torch.device("meta"):  # count without allocating or initialising
        model = namespace["FusionModel"](shapes, 5)  # type: ignore[operator]
    return sum(p.numel() for p in model.parameters())


def test_every_zoo_member_has_a_preset() -> None:
    assert set(ZOO_PRESETS) == set(ZOO_NAMES)


@pytest.mark.parametrize("name", ZOO_NAMES)
@pytest.mark.parametrize("config", CONFIGS)
def test_preset_matches_the_zoo_parameter_count(name: str, config: str) -> None:
    shapes = CONFIGS[config]
    assert n_params(render_dict(preset_genome(name)), shapes) == n_params(zoo_source(name), shapes)


def test_presets_differ_from_each_other() -> None:
    codes = {render_dict(preset_genome(name)) for name in ZOO_NAMES}
    assert len(codes) == len(ZOO_NAMES)
