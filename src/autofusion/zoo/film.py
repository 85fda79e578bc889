"""FiLM: Feature-wise Linear Modulation (Perez et al., "FiLM: Visual Reasoning with a General
Conditioning Layer", AAAI 2018).

One modality is the main stream; the others condition it. Each conditioning modality produces a
per-feature scale gamma and shift beta that modulate every token of the main stream:

    h = W_0 x_0 (token-wise);   for m = 1..M-1:  h = (1 + gamma_m) * h + beta_m;
    h = GELU(h);   logits = classifier(masked_mean(h)).

Generalisation: the first modality of ``input_shapes`` is the main stream (the paper's CNN feature
map; here its tokens, or one token for a vector modality), every other modality is a conditioning
input (the paper's question embedding), pooled by a masked mean over its real tokens. Several
conditioning modalities are applied one after another. gamma is parameterised as 1 + gamma so a
freshly initialised layer starts close to the identity, a common stabilisation of FiLM. Masks:
``<name>_mask`` True = real token; no mask = all real; padded main-stream tokens are left out of the
final pooling. With a single modality there is nothing to condition on and the model reduces to
projection -> GELU -> pool -> classifier.

Layers: main Linear(D_0, HIDDEN) per token; per conditioning modality Linear(D_m, 2 * HIDDEN) ->
(gamma, beta); head Linear(HIDDEN, HIDDEN) -> GELU -> Dropout -> Linear(HIDDEN, num_classes).
Does not: stack several FiLM-ed residual convolution blocks as the paper's visual-reasoning network.
Standalone candidate file: imports only torch and torch.nn.functional.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

HIDDEN = 64
DROPOUT = 0.1


def _as_tokens(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A vector [B, D] becomes one real token [B, 1, D]; no mask means every token is real."""
    if x.dim() == 2:
        x, mask = x.unsqueeze(1), None
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return x, mask.to(torch.bool)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens. Padding is replaced (not multiplied) by zero so no value leaks."""
    keep = mask.unsqueeze(-1)
    total = torch.where(keep, x, torch.zeros_like(x)).sum(dim=1)
    return total / keep.sum(dim=1).clamp(min=1).to(x.dtype)


class FusionModel(nn.Module):
    def __init__(self, input_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        self.names = list(input_shapes)
        dims = [int(shape[-1]) for shape in input_shapes.values()]
        self.main = nn.Linear(dims[0], HIDDEN)
        self.film = nn.ModuleList(nn.Linear(d, 2 * HIDDEN) for d in dims[1:])
        self.head = nn.Sequential(
            nn.Linear(HIDDEN, HIDDEN),
            nn.GELU(),
            nn.Dropout(DROPOUT),
            nn.Linear(HIDDEN, num_classes),
        )

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        main_name = self.names[0]
        x, mask = _as_tokens(inputs[main_name], inputs.get(main_name + "_mask"))
        h = self.main(x)  # [B, L_0, HIDDEN]
        for name, film in zip(self.names[1:], self.film):
            cond = _masked_mean(*_as_tokens(inputs[name], inputs.get(name + "_mask")))
            gamma, beta = film(cond).unsqueeze(1).chunk(2, dim=-1)
            h = (1 + gamma) * h + beta
        return self.head(_masked_mean(F.gelu(h), mask))
