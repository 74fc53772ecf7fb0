"""Sine position encodings: for feature maps (DETR) and for reference points / boxes (DINO)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    """DETR's 2-D sine encoding, normalized by each image's unpadded extent.

    (B, H, W) padding mask -> (B, 2 * num_feats, H, W).
    """

    def __init__(self, num_feats: int, temperature: float = 10000.0):
        super().__init__()
        self.num_feats = num_feats
        self.temperature = temperature

    def forward(self, mask: Tensor) -> Tensor:
        not_mask = (~mask).float()
        y = not_mask.cumsum(1)
        x = not_mask.cumsum(2)
        eps = 1e-6
        y = (y - 0.5) / (y[:, -1:, :] + eps) * 2 * math.pi
        x = (x - 0.5) / (x[:, :, -1:] + eps) * 2 * math.pi
        dim_t = torch.arange(self.num_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_feats)
        pos_x = _interleave_sin_cos(x[..., None] / dim_t)
        pos_y = _interleave_sin_cos(y[..., None] / dim_t)
        return torch.cat([pos_y, pos_x], dim=-1).permute(0, 3, 1, 2)


def sine_embed(coords: Tensor, num_feats: int, temperature: float = 10000.0) -> Tensor:
    """Encode each coordinate in [0, 1] with num_feats sines/cosines.

    (..., C) with C = 2 (x, y) or 4 (cx, cy, w, h) -> (..., C * num_feats), ordered y, x, w, h
    as in DINO so that point and box queries share the layout of their first 2 * num_feats.
    """
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=coords.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_feats)
    scaled = coords[..., None] * (2 * math.pi) / dim_t  # (..., C, num_feats)
    parts = [_interleave_sin_cos(scaled[..., i, :]) for i in range(coords.shape[-1])]
    parts[0], parts[1] = parts[1], parts[0]
    return torch.cat(parts, dim=-1)


def _interleave_sin_cos(x: Tensor) -> Tensor:
    return torch.stack([x[..., 0::2].sin(), x[..., 1::2].cos()], dim=-1).flatten(-2)
