"""Candidate places for each person's keypoints: the strongest heatmap peaks inside its box.

The keypoint decoder refines a keypoint from features sampled around where it stands; a
keypoint that stands on the wrong limb (left and right exchanged, a wrist on the elbow)
never sees where it belongs, so a click that shows the mistake cannot move it there
(`bench/click_effect.py`'s pin probe). Each type's heatmap, though, usually has a peak at
the right place too. These candidates, the C strongest local maxima of each type's heatmap
inside the person's box, give every keypoint token somewhere to jump: the decoder sees where
they lie relative to it and can point at one of them (KeypointDecoder, `candidates`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from clickpose.model.encoder import valid_cells
from clickpose.model.keypoint_heatmap import cell_centres

# A box is widened by this fraction of its size on each side: limbs reach past loose boxes.
BOX_MARGIN = 0.1
# The logit a missing candidate gets (fewer peaks in the box than candidates asked for).
ABSENT_LOGIT = -20.0


def keypoint_candidates(logits: Tensor, mask: Tensor, boxes: Tensor, count: int,
                        offsets: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The `count` strongest local maxima of each keypoint type's heatmap in each box.

    logits (B, K, h, w); mask (B, h, w) True on padding; boxes (B, N, 4) cxcywh normalized;
    offsets (B, K, 2, h, w) sub-cell offsets in cells, when the heatmaps have them.
    Returns positions (B, N, K, count, 2) normalized and their logits (B, N, K, count),
    strongest first; a candidate the box lacks sits at the box centre with ABSENT_LOGIT.
    """
    batch, num_k, h, w = logits.shape
    logits = logits.float().masked_fill(mask[:, None], float("-inf"))
    peaks = logits == F.max_pool2d(logits, 3, stride=1, padding=1)
    logits = logits.masked_fill(~peaks, float("-inf"))
    xs, ys = cell_centres(mask)                                            # (B, w), (B, h)
    half = boxes[..., 2:] * (0.5 + BOX_MARGIN)                             # (B, N, 2)
    inside_x = (xs[:, None] - boxes[..., :1]).abs() <= half[..., :1]        # (B, N, w)
    inside_y = (ys[:, None] - boxes[..., 1:2]).abs() <= half[..., 1:]       # (B, N, h)
    inside = inside_y[..., :, None] & inside_x[..., None, :]               # (B, N, h, w)
    scores = logits[:, None].masked_fill(~inside[:, :, None], float("-inf"))
    values, index = scores.flatten(3).topk(min(count, h * w), dim=-1)      # (B, N, K, C)
    x = xs.gather(1, (index % w).flatten(1)).view_as(index)
    y = ys.gather(1, (index // w).flatten(1)).view_as(index)
    if offsets is not None:
        valid_w, valid_h = valid_cells(mask)
        flat = offsets.float().flatten(3)                                  # (B, K, 2, h*w)
        per_box = index.permute(0, 2, 1, 3).flatten(2)                     # (B, K, N*C)
        dx = flat[:, :, 0].gather(2, per_box).view(batch, num_k, *index.shape[1:2], -1)
        dy = flat[:, :, 1].gather(2, per_box).view_as(dx)
        x = x + dx.permute(0, 2, 1, 3) / valid_w[:, None, None, None]
        y = y + dy.permute(0, 2, 1, 3) / valid_h[:, None, None, None]
    positions = torch.stack([x, y], -1).clamp(0.0, 1.0)
    present = torch.isfinite(values)
    centre = boxes[:, :, None, None, :2].expand_as(positions)
    positions = torch.where(present[..., None], positions, centre)
    values = torch.where(present, values, torch.full_like(values, ABSENT_LOGIT))
    if values.shape[-1] < count:  # a map smaller than the candidates asked for
        pad = count - values.shape[-1]
        positions = torch.cat([positions, centre[..., :1, :].expand(
            *positions.shape[:3], pad, 2)], 3)
        values = F.pad(values, (0, pad), value=ABSENT_LOGIT)
    return positions, values
