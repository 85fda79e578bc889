"""Early fusion with a single-stream transformer over the tokens of all modalities.

Every modality's tokens are projected to a common width, tagged with a learned modality embedding
and learned positions, concatenated behind a learned [CLS] token and processed jointly by a
transformer encoder; the [CLS] output is classified. This is the single-stream design of VisualBERT
(Li et al., 2019), UNITER (Chen et al., ECCV 2020) and ViLT (Kim et al., ICML 2021), with the
[CLS] readout of BERT (Devlin et al., NAACL 2019).

Generalisation: any number of modalities in the order of ``input_shapes``; a vector modality is one
token. Each modality has its own projection and its own learned positions (sized by its sequence
length in ``input_shapes``) and one learned modality-type embedding. Masks (``<name>_mask`` True =
real token; no mask = all real) become the encoder's ``src_key_padding_mask``; the [CLS] token is
never padded, so every sample has at least one real key.

Layers: per modality Linear(D_m, HIDDEN) and positions [L_m, HIDDEN] (L_m = 1 for a vector);
modality embeddings [M, HIDDEN]; CLS [HIDDEN]; embedding Dropout; nn.TransformerEncoder of 2
nn.TransformerEncoderLayer(HIDDEN, 4 heads, dim_feedforward 4 * HIDDEN, dropout 0.1, GELU,
batch_first, norm_first) with a final LayerNorm(HIDDEN); head on the [CLS] output Linear(HIDDEN,
HIDDEN) -> GELU -> Dropout -> Linear(HIDDEN, num_classes).
Does not: pretrain (no masked-token objectives); it learns from the task's labels only.
Standalone candidate file: imports only torch.
"""

import torch
import torch.nn as nn

HIDDEN = 64
DROPOUT = 0.1
N_HEADS = 4
N_LAYERS = 2


def _as_tokens(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A vector [B, D] becomes one real token [B, 1, D]; no mask means every token is real."""
    if x.dim() == 2:
        x, mask = x.unsqueeze(1), None
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return x, mask.to(torch.bool)


class FusionModel(nn.Module):
    def __init__(self, input_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        self.names = list(input_shapes)
        shapes = [tuple(int(s) for s in shape) for shape in input_shapes.values()]
        self.proj = nn.ModuleList(nn.Linear(shape[-1], HIDDEN) for shape in shapes)
        self.positions = nn.ParameterList(
            nn.Parameter(0.02 * torch.randn(shape[0] if len(shape) == 2 else 1, HIDDEN))
            for shape in shapes
        )
        self.modality = nn.Parameter(0.02 * torch.randn(len(shapes), HIDDEN))
        self.cls = nn.Parameter(0.02 * torch.randn(HIDDEN))
        self.drop = nn.Dropout(DROPOUT)
        layer = nn.TransformerEncoderLayer(
            HIDDEN,
            N_HEADS,
            dim_feedforward=4 * HIDDEN,
            dropout=DROPOUT,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, N_LAYERS, norm=nn.LayerNorm(HIDDEN), enable_nested_tensor=False
        )
        self.head = nn.Sequential(
            nn.Linear(HIDDEN, HIDDEN),
            nn.GELU(),
            nn.Dropout(DROPOUT),
            nn.Linear(HIDDEN, num_classes),
        )

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        tokens, masks = [], []
        for i, name in enumerate(self.names):
            x, mask = _as_tokens(inputs[name], inputs.get(name + "_mask"))
            tokens.append(self.proj[i](x) + self.positions[i][: x.shape[1]] + self.modality[i])
            masks.append(mask)
        batch = tokens[0].shape[0]
        cls = self.cls.expand(batch, 1, HIDDEN)
        cls_mask = torch.ones(batch, 1, dtype=torch.bool, device=cls.device)
        seq = self.drop(torch.cat([cls] + tokens, dim=1))
        padding = ~torch.cat([cls_mask] + masks, dim=1)
        out = self.encoder(seq, src_key_padding_mask=padding)
        return self.head(out[:, 0])
