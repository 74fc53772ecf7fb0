"""Deformable transformer encoder over the flattened multi-scale feature maps."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from clickpose.model.layers import FeedForward
from clickpose.model.ms_deform_attn import MSDeformAttn


@dataclass
class EncoderState:
    """What the decoders read, cached by the interactive session (one image: B = 1)."""
    memory: Tensor                       # (B, S, D) encoded tokens of all levels
    memory_mask: Tensor                  # (B, S) True on padding
    pos: Tensor                          # (B, S, D) position + level embedding
    level_shapes: list[tuple[int, int]]  # (h, w) per level
    level_start_index: list[int]         # start of each level in S
    valid_ratios: Tensor                 # (B, L, 2) unpadded fraction (w, h) of each level
    # Per keypoint-decoder layer, its projected memory (MSDeformAttn.project_values); set by
    # the interactive session so that a click skips the projection. None: computed per call.
    keypoint_values: list[list[Tensor]] | None = None
    # (B, K, h, w) keypoint heatmap logits (None: the model has none) and their (B, h, w)
    # padding mask: the finest level's, or the finer backbone level's (heatmap_fine_level).
    keypoint_heatmap: Tensor | None = None
    heatmap_padding: Tensor | None = None
    # (B, K, 2, h, w) where in its cell each type's keypoint lies, in cells from the cell's
    # centre (None: the model predicts no offsets; keypoints sit at cell centres).
    keypoint_offsets: Tensor | None = None

    @property
    def heatmap_mask(self) -> Tensor:
        return self.finest_mask if self.heatmap_padding is None else self.heatmap_padding

    @property
    def finest_mask(self) -> Tensor:
        """(B, h, w) padding mask of the finest level."""
        h, w = self.level_shapes[0]
        return self.memory_mask[:, :h * w].view(-1, h, w)

    @property
    def spatial_shapes(self) -> Tensor:
        return torch.tensor(self.level_shapes, dtype=torch.long, device=self.memory.device)


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, num_levels: int, num_heads: int, num_points: int,
                 dropout: float):
        super().__init__()
        self.self_attn = MSDeformAttn(dim, num_levels, num_heads, num_points)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor,
                level_shapes: list[tuple[int, int]], padding_mask: Tensor) -> Tensor:
        attended = self.self_attn(src + pos, reference_points, src, level_shapes, padding_mask)
        src = self.norm(src + self.dropout(attended))
        return self.ffn(src)


class Encoder(nn.Module):
    def __init__(self, num_layers: int, dim: int, ffn_dim: int, num_levels: int, num_heads: int,
                 num_points: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(dim, ffn_dim, num_levels, num_heads, num_points, dropout)
            for _ in range(num_layers))

    def forward(self, src: Tensor, pos: Tensor, padding_mask: Tensor,
                level_shapes: list[tuple[int, int]], valid_ratios: Tensor) -> Tensor:
        reference_points = encoder_reference_points(level_shapes, valid_ratios)
        for layer in self.layers:
            src = layer(src, pos, reference_points, level_shapes, padding_mask)
        return src


def encoder_reference_points(level_shapes: list[tuple[int, int]], valid_ratios: Tensor) -> Tensor:
    """Every token's own pixel centre, seen from every level: (B, S, L, 2) in the padded frame."""
    points = []
    for lvl, (h, w) in enumerate(level_shapes):
        ys, xs = torch.meshgrid(
            torch.linspace(0.5, h - 0.5, h, device=valid_ratios.device),
            torch.linspace(0.5, w - 0.5, w, device=valid_ratios.device), indexing="ij")
        # Normalize by the unpadded extent, then map back into the padded frame per level.
        ys = ys.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
        xs = xs.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
        points.append(torch.stack([xs, ys], -1))
    points = torch.cat(points, 1)
    return points[:, :, None] * valid_ratios[:, None]


def valid_cells(mask: Tensor) -> tuple[Tensor, Tensor]:
    """(B, h, w) padding mask -> per image the unpadded (width, height) in cells, (B,) each."""
    return (~mask[:, 0, :]).sum(1).float(), (~mask[:, :, 0]).sum(1).float()


def valid_ratios_of(mask: Tensor) -> Tensor:
    """(B, h, w) padding mask -> (B, 2) unpadded fraction (w, h)."""
    valid_w, valid_h = valid_cells(mask)
    return torch.stack([valid_w / mask.shape[2], valid_h / mask.shape[1]], -1)
