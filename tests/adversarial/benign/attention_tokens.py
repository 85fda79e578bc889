"""Benign: tokens of all modalities projected to one width, one self-attention layer, CLS pooling."""
import torch
import torch.nn as nn
import torch.nn.functional as F

WIDTH = 16


class FusionModel(nn.Module):
    def __init__(self, input_shapes, num_classes):
        super().__init__()
        self.names = list(input_shapes)
        self.proj = nn.ModuleDict({n: nn.Linear(int(s[-1]), WIDTH) for n, s in input_shapes.items()})
        self.cls = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.attn = nn.MultiheadAttention(WIDTH, 2, batch_first=True)
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, num_classes)

    def forward(self, **inputs):
        tokens = [self.cls.expand(inputs[self.names[0]].shape[0], -1, -1)]
        for name in self.names:
            x = inputs[name]
            tokens.append(self.proj[name](x if x.dim() == 3 else x.unsqueeze(1)))
        seq = torch.cat(tokens, dim=1)
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        return self.head(F.gelu(self.norm(seq + out))[:, 0])
