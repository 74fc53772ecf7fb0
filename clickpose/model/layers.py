"""Small building blocks shared by the encoder and the decoders."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    """A few Linear layers with ReLU between them (DETR's box head)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [out_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class FeedForward(nn.Module):
    """Transformer feed-forward block with residual and post-norm."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden_dim)
        self.linear2 = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))


def zero_last_layer(mlp: MLP) -> None:
    """Start a refinement head at 'no change' so early training keeps its reference points."""
    nn.init.zeros_(mlp.layers[-1].weight)
    nn.init.zeros_(mlp.layers[-1].bias)
