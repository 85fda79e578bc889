"""Code extraction from replies shaped like real model output."""

from __future__ import annotations

import ast

import pytest

from autofusion.generators.extract import ExtractStatus, extract_code

MODULE = '''import torch
import torch.nn as nn


class FusionModel(nn.Module):
    def __init__(self, input_shapes, num_classes):
        super().__init__()
        dim = sum(s[-1] for s in input_shapes.values())
        self.head = nn.Linear(dim, num_classes)

    def forward(self, **inputs):
        feats = [v.mean(1) if v.dim() == 3 else v for k, v in inputs.items() if not k.endswith("_mask")]
        return self.head(torch.cat(feats, dim=-1))
'''


def test_python_fence_with_chatter_around_it():
    reply = f"Sure! Here is a gated design.\n\n```python\n{MODULE}```\n\nThis should train fast. Let me know!"
    result = extract_code(reply, "stop")
    assert result.status is ExtractStatus.OK
    assert result.code == MODULE


@pytest.mark.parametrize("tag", ["py", "", "Python", "python3"])
def test_other_fence_tags_are_python_too(tag):
    result = extract_code(f"Idea: mean-pool.\n```{tag}\n{MODULE}```\n", "stop")
    assert result.ok and "class FusionModel" in result.code


def test_tilde_fences():
    assert extract_code(f"~~~python\n{MODULE}~~~", None).code == MODULE


def test_unfenced_code_with_chatter_before_and_after():
    reply = f"Here you go:\n\n{MODULE}\nThis module concatenates the pooled features."
    result = extract_code(reply, "end_turn")
    assert result.ok
    ast.parse(result.code)
    assert "This module" not in result.code and result.code.startswith("import torch")


def test_the_block_defining_fusion_model_wins_over_usage_examples():
    usage = "model = FusionModel({'a': (4,)}, 3)\nprint(model)"
    reply = f"```bash\npip install torch\n```\n```python\n{MODULE}```\nUsage:\n```python\n{usage}\n```"
    assert extract_code(reply).code == MODULE


def test_the_last_version_wins_when_the_reply_revises_itself():
    first = MODULE.replace("self.head = nn.Linear(dim, num_classes)", "self.head = nn.Linear(dim, 7)")
    reply = f"First try:\n```python\n{first}```\nWait, that hard-codes 7. Fixed:\n```python\n{MODULE}```"
    assert extract_code(reply).code == MODULE


def test_imports_in_a_separate_block_are_joined_in_front():
    body = MODULE.split("\n\n\n", 1)[1]
    reply = f"Imports:\n```python\nimport torch\nimport torch.nn as nn\n```\nModel:\n```python\n{body}```"
    result = extract_code(reply)
    assert result.ok and result.reason == "joined 2 blocks"
    assert result.code.startswith("import torch\nimport torch.nn as nn\n")
    ast.parse(result.code)


def test_a_helper_class_in_another_block_is_joined_when_used():
    helper = "import torch.nn as nn\n\nclass Gate(nn.Module):\n    pass\n"
    main = MODULE.replace("self.head = nn.Linear", "self.gate = Gate()\n        self.head = nn.Linear")
    unrelated = "def plot(x):\n    return x\n"
    result = extract_code(f"```python\n{helper}```\n```python\n{unrelated}```\n```python\n{main}```")
    assert result.ok and "class Gate" in result.code and "def plot" not in result.code
    assert result.code.index("class Gate") < result.code.index("class FusionModel")


@pytest.mark.parametrize("reason", ["length", "max_tokens", "MAX_TOKENS"])
def test_token_limit_finish_reasons_mean_truncated(reason):
    result = extract_code(f"```python\n{MODULE}```", reason)
    assert result.status is ExtractStatus.TRUNCATED and result.code is None
    assert reason in result.reason


def test_an_unclosed_fence_that_does_not_parse_is_truncated_even_if_the_server_said_stop():
    cut = MODULE[: MODULE.index("return self.head") + 12]
    result = extract_code(f"Here:\n```python\n{cut}", "stop")
    assert result.status is ExtractStatus.TRUNCATED


def test_an_unclosed_fence_whose_code_is_complete_is_accepted():
    assert extract_code(f"```python\n{MODULE}", "stop").code == MODULE


def test_a_reply_without_fusion_model_is_no_code():
    result = extract_code("I cannot help with that.\n```python\nprint('hi')\n```", "stop")
    assert result.status is ExtractStatus.NO_CODE and "FusionModel" in result.reason


def test_reasoning_sections_are_ignored():
    draft = "class FusionModel(nn.Module):\n    broken("
    reply = f"<think>maybe this:\n```python\n{draft}\n```\n</think>\n```python\n{MODULE}```"
    assert extract_code(reply, "stop").code == MODULE


def test_windows_line_endings():
    reply = f"```python\n{MODULE}```".replace("\n", "\r\n")
    assert extract_code(reply).code == MODULE
