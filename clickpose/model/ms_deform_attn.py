"""Multi-scale deformable attention (Zhu et al., Deformable DETR) in plain PyTorch.

Each query looks at n_points sampled locations per head and feature level around its
reference point; the samples are read with F.grid_sample, so CPU and every GPU run the
same code (no custom CUDA kernel).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def value_maps(value: Tensor, level_shapes: list[tuple[int, int]]) -> list[Tensor]:
    """(B, S, heads, head_dim) -> per level (B*heads, head_dim, h, w), grid_sample's layout."""
    batch, _, heads, head_dim = value.shape
    values = value.split([h * w for h, w in level_shapes], dim=1)
    return [v.flatten(2).transpose(1, 2).reshape(batch * heads, head_dim, h, w)
            for v, (h, w) in zip(values, level_shapes)]


def ms_deform_attn_core(
    maps: list[Tensor],                # per level (B*heads, head_dim, h, w)
    sampling_locations: Tensor,        # (B, Q, heads, levels, points, 2), x y in [0, 1]
    attention_weights: Tensor,         # (B, Q, heads, levels, points)
) -> Tensor:                           # (B, Q, heads * head_dim)
    batch, num_queries, heads, levels, points, _ = sampling_locations.shape
    head_dim = maps[0].shape[1]
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    # (B, Q, heads, levels, points) -> (B*heads, 1, Q, levels, points), one level at a time
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, num_queries,
                                                          levels, points)
    out = None
    for lvl, value_l in enumerate(maps):
        # (B, Q, heads, points, 2) -> (B*heads, Q, points, 2)
        grid_l = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        # Sample in the grid's precision: under bf16 autocast, bf16 locations would be off
        # by a fraction of a cell.
        sampled = F.grid_sample(value_l.to(grid_l.dtype), grid_l, mode="bilinear",
                                padding_mode="zeros", align_corners=False)
        # (B*heads, head_dim, Q, points) weighted over the points. Multiply-and-sum per level
        # beats a batched matmul of so many tiny matrices, and a concatenation of the levels.
        level_out = (sampled * weights[..., lvl, :]).sum(-1)
        out = level_out if out is None else out + level_out
    return out.view(batch, heads * head_dim, num_queries).transpose(1, 2)


class MSDeformAttn(nn.Module):
    def __init__(self, dim: int, num_levels: int, num_heads: int, num_points: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_dim {dim} must be divisible by num_heads {num_heads}")
        self.dim, self.num_levels, self.num_heads, self.num_points = (
            dim, num_levels, num_heads, num_points)
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # Offsets start on a ring of directions, one per head, growing with the point index.
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2 * math.pi / self.num_heads)
        grid = torch.stack([angles.cos(), angles.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for layer in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def project_values(self, value_input: Tensor, level_shapes: list[tuple[int, int]],
                       value_padding_mask: Tensor | None = None) -> list[Tensor]:
        """The projected memory in sampling layout; a caller may cache it (it depends on the
        memory only, not on the queries)."""
        value = self.value_proj(value_input)
        # On the CPU a batch without padding (same-sized images) skips a pass over the whole
        # memory; on a GPU the pass is cheaper than the host sync that asking would cost.
        if value_padding_mask is not None and (
                value.device.type != "cpu" or bool(value_padding_mask.any())):
            value = value.masked_fill(value_padding_mask[..., None], 0.0)
        value = value.view(value.shape[0], value.shape[1], self.num_heads,
                           self.dim // self.num_heads)
        return value_maps(value, level_shapes)

    def forward(
        self,
        query: Tensor,              # (B, Q, dim)
        reference_points: Tensor,   # (B, Q, levels, 2 or 4) in the padded frame, [0, 1]
        value_input: Tensor | None,  # (B, S, dim); may be None when `maps` are given
        level_shapes: list[tuple[int, int]],
        value_padding_mask: Tensor | None = None,  # (B, S) True on padding
        maps: list[Tensor] | None = None,  # from project_values, to skip the projection
    ) -> Tensor:
        batch, num_queries, _ = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        if maps is None:
            maps = self.project_values(value_input, level_shapes, value_padding_mask)
        offsets = self.sampling_offsets(query).view(batch, num_queries, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, num_queries, heads, levels * points)
        weights = weights.softmax(-1).view(batch, num_queries, heads, levels, points)
        if reference_points.shape[-1] == 2:
            # Offsets are in pixels of each level.
            wh = torch.tensor([[w, h] for h, w in level_shapes], dtype=query.dtype,
                              device=query.device)
            locations = (reference_points[:, :, None, :, None, :]
                         + offsets / wh[None, None, None, :, None, :])
        else:
            # Offsets are relative to the box (or keypoint extent) size.
            locations = (reference_points[:, :, None, :, None, :2] + offsets / points
                         * reference_points[:, :, None, :, None, 2:] * 0.5)
        out = ms_deform_attn_core(maps, locations, weights)
        return self.output_proj(out)
