"""The static policy: what it refuses (with rule and line), and that ordinary fusion code passes."""

from __future__ import annotations

import importlib
import random
import textwrap

import pytest

from autofusion import gate
from autofusion.gate import MAX_SOURCE_BYTES, MODULE_API, Violation, check_source, normalized_hash

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\nimport math\n\n"
MODEL = '''
class FusionModel(nn.Module):
    def __init__(self, input_shapes, num_classes):
        super().__init__()
        self.head = nn.Linear(4, num_classes)

    def forward(self, **inputs):
        x = inputs["a"]
{body}        return self.head(x)
'''


def model(body: str = "", head: str = HEAD, extra: str = "") -> str:
    return head + extra + MODEL.format(body=textwrap.indent(textwrap.dedent(body), " " * 8))


def rules(code: str) -> set[str]:
    return {v.rule for v in check_source(code)}


def test_a_plain_module_passes() -> None:
    assert check_source(model("x = F.relu(x) * math.sqrt(2.0)\n")) == []


@pytest.mark.parametrize("snippet, rule", [
    ("import os\n", "import"),
    ("from os import system\n", "import"),
    ("from . import x\n", "import"),
    ("from torch import *\n", "import"),
    ("import torch.utils\n", "import"),
    ("from torch import load\n", "import"),
])
def test_every_import_form_is_checked(snippet: str, rule: str) -> None:
    assert rule in rules(model(extra=snippet))


@pytest.mark.parametrize("body, rule", [
    ("y = torch.os\n", "module-attribute"),
    ("y = F.importlib\n", "module-attribute"),
    ("y = torch.from_file('/etc/passwd')\n", "module-attribute"),
    ("y = torch.load('x')\n", "module-attribute"),
    ("y = torch.distributed\n", "module-attribute"),
    ("y = nn.functional.torch\n", "module-attribute"),
    ("y = torch.utils.cpp_extension\n", "module-attribute"),
    ("t = torch\n", "module-value"),
    ("y = getattr(torch, 'o' + 's')\n", "computed-attribute"),
    ("y = getattr(x, name)\n", "computed-attribute"),
    ("y = getattr(torch, 'os')\n", "module-attribute"),
    ("y = x.__class__\n", "dunder-attribute"),
    ("y = ().__class__.__base__.__subclasses__()\n", "dunder-attribute"),
    ("y = nn.Linear.forward.__globals__\n", "dunder-attribute"),
    ("y = x.grad_fn._saved_self\n", "private-attribute"),
    ("y = x.gi_frame.f_back\n", "forbidden-attribute"),
    ("y = x.untyped_storage()\n", "forbidden-attribute"),
    ("y = x.numpy()\n", "forbidden-attribute"),
    ("y = '{0.__class__}'.format(x)\n", "forbidden-attribute"),
    ("y = eval('1')\n", "forbidden-name"),
    ("y = exec\n", "forbidden-name"),
    ("y = open('f')\n", "forbidden-name"),
    ("y = vars(x)\n", "forbidden-name"),
    ("y = globals()\n", "forbidden-name"),
    ("breakpoint()\n", "forbidden-name"),
    ("y = __builtins__\n", "forbidden-name"),
    ("F.cross_entropy = None\n", "assign-into-module"),
    ("nn.Linear.forward = None\n", "assign-into-module"),
    ("torch = None\n", "rebind-import"),
    ("global z\n", "global"),
    ("match x:\n            case torch.Tensor(numpy=f):\n                y = f\n", "match"),  # attribute read with no Attribute node
    ("match x:\n            case {'k': v}:\n                y = v\n", "match"),
])
def test_forbidden_forms_are_refused(body: str, rule: str) -> None:
    found = check_source(model(body))
    assert rule in {v.rule for v in found}, found


@pytest.mark.parametrize("extra, rule", [
    ("print('hi')\n", "top-level"),
    ("for i in range(3):\n    pass\n", "top-level"),
    ("X = [i for i in range(3)]\n", "top-level"),
    ("class Evil(torch.Tensor):\n    def __torch_function__(cls, *a):\n        return 0\n", "dunder-method"),
    ("class M(nn.Module):\n    def parameters(self, recurse=True):\n        return iter([])\n", "reserved-method"),
    ("class M(nn.Module, metaclass=type):\n    pass\n", "class-keywords"),
    ("class M(nn.Module):\n    print('x')\n", "class-body"),
])
def test_module_and_class_level_code_is_restricted(extra: str, rule: str) -> None:
    assert rule in rules(model(extra=extra))


def test_violations_carry_line_numbers() -> None:
    code = model("y = torch.os\n")
    line = next(i for i, text in enumerate(code.splitlines(), 1) if "torch.os" in text)
    assert Violation(line, "module-attribute", "`torch.os` is not on the allow-list of what a fusion module may use") in check_source(code)


def test_size_is_capped_before_parsing() -> None:
    huge = "x = (" * 200_000  # would exhaust the parser if it were parsed
    assert [v.rule for v in check_source(huge)] == ["size"]
    assert len(huge) > MAX_SOURCE_BYTES


def test_coding_cookie_and_non_ascii_identifiers_are_rejected() -> None:
    assert rules("# -*- coding: utf-7 -*-\n" + model()) == {"encoding"}
    fullwidth = model("ｅｘｅｃ('1')\n")
    assert {"identifier", "forbidden-name"} <= rules(fullwidth)


def test_literal_getattr_and_fstrings_and_module_constants_pass() -> None:
    code = model("y = getattr(self, 'head')\nz = f'{x.shape}'\n", extra="SCALE = 1.0 / math.sqrt(16)\nEPS = 1e-6\n\n")
    assert check_source(code) == []


def test_every_allow_listed_name_exists_in_torch_and_math() -> None:
    for module, names in MODULE_API.items():
        mod = importlib.import_module(module)
        missing = sorted(n for n in names if not hasattr(mod, n))
        assert not missing, f"{module}: {missing}"


def test_the_zoo_passes() -> None:
    zoo = pytest.importorskip("autofusion.zoo")
    for name in zoo.ZOO_NAMES:
        assert check_source(zoo.zoo_source(name)) == [], name


def test_synthesizer_output_passes() -> None:
    synth = pytest.importorskip("autofusion.generators.synth")
    for name, genome in synth.ZOO_PRESETS.items():
        assert check_source(synth.render(genome)) == [], name
    for seed in range(150):
        code = synth.render(synth.random_genome(random.Random(seed)))
        assert check_source(code) == [], (seed, check_source(code))


def test_normalized_hash_ignores_comments_and_docstrings() -> None:
    a = model()
    b = '"""doc"""\n' + a.replace("super().__init__()", "super().__init__()  # comment")
    assert normalized_hash(a) == normalized_hash(b)
    assert normalized_hash(a) != normalized_hash(model("x = x + 1\n"))
    assert gate.ALLOWED_MODULES == ("torch", "torch.nn", "torch.nn.functional", "math")
