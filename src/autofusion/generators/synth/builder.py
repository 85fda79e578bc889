"""A small accumulator for rendered source: constants, helper snippets, __init__ and forward lines.

`render.py` and `fusions.py` append to one `Source` while walking a genome; `Source.text()` lays the
pieces out as one candidate file. The builder knows nothing about fusion; it only keeps the pieces in
order, without duplicates, and indents the method bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autofusion.generators.synth import snippets
from autofusion.generators.synth.genome import Genome

ACT_MODULE = {"gelu": "nn.GELU()", "relu": "nn.ReLU()", "silu": "nn.SiLU()", "tanh": "nn.Tanh()"}
ACT_FUNCTION = {"gelu": "F.gelu", "relu": "F.relu", "silu": "F.silu", "tanh": "torch.tanh"}
# nn.TransformerEncoderLayer accepts "gelu"/"relu" by name, other activations as callables.
ACT_TRANSFORMER = {"gelu": '"gelu"', "relu": '"relu"', "silu": "F.silu", "tanh": "torch.tanh"}


@dataclass
class Source:
    """The pieces of one candidate file, filled in by the renderer."""

    genome: Genome
    constants: dict[str, str] = field(default_factory=dict)
    helpers: list[str] = field(default_factory=list)
    init: list[str] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)

    def const(self, name: str, value: object) -> str:
        self.constants.setdefault(name, repr(value))
        return name

    def need(self, snippet: str) -> None:
        """Include a helper snippet once; helpers that a snippet itself uses are added first."""
        if snippet in self.helpers:
            return
        if snippet is snippets.MODALITY_ENCODER:
            self.need(self.transformer_layer())
            self.need(snippets.KEY_PADDING)
        self.helpers.append(snippet)

    def transformer_layer(self) -> str:
        self.const("HEADS", self.genome.heads)
        return snippets.TRANSFORMER_LAYER.format(activation=ACT_TRANSFORMER[self.genome.activation])

    def act_module(self) -> str:
        return ACT_MODULE[self.genome.activation]

    def act_function(self) -> str:
        return ACT_FUNCTION[self.genome.activation]

    def text(self, docstring: str) -> str:
        body = "\n".join(self.helpers) + self._model()
        imports = []
        if "math." in body:
            imports.append("import math\n")
        imports.append("import torch\nimport torch.nn as nn")
        if "F." in body:
            imports.append("import torch.nn.functional as F")
        constants = "\n".join(f"{name} = {value}" for name, value in self.constants.items())
        return f'"""{docstring}\n"""\n\n' + "\n".join(imports) + "\n\n" + constants + "\n\n" + body

    def _model(self) -> str:
        init = "\n".join(f"        {line}" if line else "" for line in self.init)
        forward = "\n".join(f"        {line}" if line else "" for line in self.forward)
        return (
            "\n\nclass FusionModel(nn.Module):\n"
            "    def __init__(self, input_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:\n"
            "        super().__init__()\n"
            f"{init}\n\n"
            "    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:\n"
            f"{forward}\n"
        )
