"""Human-to-keypoint decoder (ED-Pose lineage, with Click-Pose's pinned keypoints).

Each person is one box token followed by K keypoint tokens. Per layer:
  1. within-person self-attention over the person's K + 1 tokens,
  2. across-person self-attention between the box tokens (an optional mask keeps
     denoising persons out of the normal persons' view),
  3. deformable cross-attention of every token at its reference (the box, or the keypoint
     with an extent learned per keypoint type as a fraction of the current box),
  4. feed-forward,
then heads refine the box, the person logit, every keypoint's xy (iteratively, in logit
space) and predict its visibility / confidence. A pinned keypoint (a click, given exactly)
is copied from the input at every layer, so it never drifts; a learned embedding marks
its token as trustworthy so the other keypoints can lean on it.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from clickpose.model.box_ops import inverse_sigmoid
from clickpose.model.encoder import EncoderState
from clickpose.model.human_decoder import scale_to_padded
from clickpose.model.layers import MLP, FeedForward, zero_last_layer
from clickpose.model.ms_deform_attn import MSDeformAttn
from clickpose.model.position_encoding import sine_embed


class KeypointDecoderLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, num_levels: int, num_heads: int, num_points: int,
                 dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.within_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.across_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = MSDeformAttn(dim, num_levels, num_heads, num_points)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout)

    def forward(self, tokens: Tensor, pos: Tensor, reference_points: Tensor,
                across_mask: Tensor | None, state: EncoderState,
                values: list[Tensor] | None = None) -> Tensor:
        # tokens, pos: (B, P, T, D) with T = 1 + K; reference_points: (B, P*T, L, 4)
        batch, persons, length, dim = tokens.shape
        x = tokens.flatten(0, 1)
        q = x + pos.flatten(0, 1)
        x = self.norm1(x + self.dropout(self.within_attn(q, q, x, need_weights=False)[0]))
        x = x.view(batch, persons, length, dim)

        box, box_pos = x[:, :, 0], pos[:, :, 0]
        q = box + box_pos
        mask = None
        if across_mask is not None:
            mask = across_mask.repeat_interleave(self.num_heads, dim=0)  # (B*heads, P, P)
        attended = self.across_attn(q, q, box, attn_mask=mask, need_weights=False)[0]
        box = self.norm2(box + self.dropout(attended))
        x = torch.cat([box[:, :, None], x[:, :, 1:]], dim=2)

        flat = x.flatten(1, 2)
        attended = self.cross_attn(flat + pos.flatten(1, 2), reference_points, state.memory,
                                   state.level_shapes, state.memory_mask, maps=values)
        flat = self.ffn(self.norm3(flat + self.dropout(attended)))
        return flat.view(batch, persons, length, dim)


class KeypointDecoder(nn.Module):
    def __init__(self, num_layers: int, num_keypoints: int, dim: int, ffn_dim: int,
                 num_levels: int, num_heads: int, num_points: int, dropout: float):
        super().__init__()
        self.dim, self.num_keypoints = dim, num_keypoints
        self.keypoint_embed = nn.Embedding(num_keypoints, dim)  # one content query per type
        self.pinned_embed = nn.Parameter(torch.zeros(dim))       # added to pinned keypoints
        self.given_person_embed = nn.Parameter(torch.zeros(dim))  # a person given by a box
        nn.init.normal_(self.given_person_embed, std=0.02)
        nn.init.normal_(self.pinned_embed, std=0.02)
        # Default start: a learned layout per keypoint type, in units of the half box size.
        self.keypoint_layout = nn.Parameter(torch.empty(num_keypoints, 2).uniform_(-1.0, 1.0))
        # Extent of each keypoint's sampling area, as a fraction of the box (logit).
        self.keypoint_extent = nn.Parameter(torch.full((num_keypoints, 2), -2.0))
        self.ref_point_head = MLP(2 * dim, dim, dim, 2)
        layer = KeypointDecoderLayer(dim, ffn_dim, num_levels, num_heads, num_points, dropout)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.class_heads = nn.ModuleList(nn.Linear(dim, 1) for _ in range(num_layers))
        self.box_heads = nn.ModuleList(MLP(dim, dim, 4, 3) for _ in range(num_layers))
        self.xy_heads = nn.ModuleList(MLP(dim, dim, 2, 3) for _ in range(num_layers))
        self.visibility_heads = nn.ModuleList(nn.Linear(dim, 1) for _ in range(num_layers))
        for head in [*self.box_heads, *self.xy_heads]:
            zero_last_layer(head)
        for head in self.class_heads:
            nn.init.constant_(head.bias, -4.595)

    def default_keypoints(self, boxes: Tensor) -> Tensor:
        """(..., 4) cxcywh boxes -> (..., K, 2) starting keypoints inside each box."""
        offsets = torch.tanh(self.keypoint_layout) * 0.5  # (K, 2), within the box
        xy = boxes[..., None, :2] + offsets * boxes[..., None, 2:]
        return xy.clamp(0.0, 1.0)

    def project_memory(self, state: EncoderState) -> list[list[Tensor]]:
        """Each layer's projected memory, to cache while the memory stays the same."""
        return [layer.cross_attn.project_values(state.memory, state.level_shapes,
                                                state.memory_mask) for layer in self.layers]

    def given_person_content(self, batch: int, persons: int) -> Tensor:
        return self.given_person_embed.expand(batch, persons, self.dim)

    def forward(
        self,
        state: EncoderState,
        content: Tensor,                  # (B, P, D) box-token content of each person
        boxes: Tensor,                    # (B, P, 4) cxcywh reference boxes
        keypoints: Tensor,                # (B, P, K, 2) starting keypoints
        pinned: Tensor,                   # (B, P, K) bool: keypoints given exactly
        across_mask: Tensor | None = None,  # (B, P, P) True where a person may not look
    ) -> list[dict[str, Tensor]]:
        """One dict per layer: pred_logits (B, P, 1), pred_boxes (B, P, 4),
        pred_keypoints (B, P, K, 2), pred_visibility (B, P, K)."""
        batch, persons = content.shape[:2]
        keypoint_content = (self.keypoint_embed.weight[None, None]
                            + pinned[..., None].to(content.dtype) * self.pinned_embed)
        tokens = torch.cat([content[:, :, None], keypoint_content], dim=2)  # (B, P, 1+K, D)
        box_ref, keypoint_xy = boxes, keypoints
        pinned_xy = pinned[..., None]

        outputs = []
        for i, layer in enumerate(self.layers):
            # A keypoint samples an area sized per keypoint type, relative to its box.
            extent = box_ref[..., None, 2:] * self.keypoint_extent.sigmoid()  # (B, P, K, 2)
            keypoint_ref = torch.cat([keypoint_xy, extent], dim=-1)
            ref = torch.cat([box_ref[:, :, None], keypoint_ref], dim=2).flatten(1, 2)
            ref_input = scale_to_padded(ref, state.valid_ratios)           # (B, P*T, L, 4)
            pos = self.ref_point_head(sine_embed(ref_input[:, :, 0], self.dim // 2))
            pos = pos.view(batch, persons, -1, self.dim)
            values = state.keypoint_values[i] if state.keypoint_values is not None else None
            tokens = layer(tokens, pos, ref_input, across_mask, state, values)
            box_tokens, keypoint_tokens = tokens[:, :, 0], tokens[:, :, 1:]

            new_boxes = (self.box_heads[i](box_tokens) + inverse_sigmoid(box_ref)).sigmoid()
            xy = (self.xy_heads[i](keypoint_tokens)
                  + inverse_sigmoid(keypoint_ref[..., :2])).sigmoid()
            xy = torch.where(pinned_xy, keypoints, xy)  # a click never moves
            outputs.append({
                "pred_logits": self.class_heads[i](box_tokens),
                "pred_boxes": new_boxes,
                "pred_keypoints": xy,
                "pred_visibility": self.visibility_heads[i](keypoint_tokens)[..., 0],
            })
            box_ref = new_boxes.detach()
            keypoint_xy = xy.detach()
        return outputs


def denoising_across_mask(num_normal: int, dn_valid: Tensor) -> Tensor:
    """(B, N + D, N + D) bool, True = may not attend.

    Normal persons never see denoising persons; a denoising person sees the normal persons
    and itself, never another denoising person (each is its own puzzle). Padding rows see
    only themselves.
    """
    batch, num_dn = dn_valid.shape
    total = num_normal + num_dn
    mask = torch.zeros(batch, total, total, dtype=torch.bool, device=dn_valid.device)
    mask[:, :num_normal, num_normal:] = True
    mask[:, num_normal:, num_normal:] = ~torch.eye(num_dn, dtype=torch.bool, device=dn_valid.device)
    mask[:, num_normal:, :num_normal] |= ~dn_valid[:, :, None]
    return mask
