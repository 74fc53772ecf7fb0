"""How detected persons are ranked when the model has no pose-quality head
(clickpose.model.pose_quality): the decoder's person probability weighed with the keypoint
heatmaps' support of the pose; and box NMS over what is left, for every model.

A DETR-style person logit learns to rank true persons above their duplicates only late in
training (one-to-one matching makes each duplicate a negative that the queries must learn
to tell apart). The keypoint heatmaps learn from every labelled keypoint at once, so how
strongly they fire where a person's keypoints were placed says early whether the pose sits
on a real person (the README's measured figures give the AP with and without it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import nms

from clickpose.model.box_ops import box_cxcywh_to_xyxy
from clickpose.model.encoder import valid_cells

# The support counts twice the person probability: score = (p * support^2)^(1/3).
SUPPORT_WEIGHT = 2.0


def heatmap_support(logits: Tensor, mask: Tensor, keypoints: Tensor) -> Tensor:
    """Each keypoint type's heatmap probability where that keypoint is.

    logits (B, K, h, w) heatmap logits; mask (B, h, w) True on padding; keypoints
    (B, N, K, 2) normalized by each image's unpadded size. Returns (B, N, K) in [0, 1].
    """
    batch, num_types, h, w = logits.shape
    valid_w, valid_h = valid_cells(mask)
    # Unpadded [0, 1] -> grid_sample's [-1, 1] over the whole padded map (cell centres at
    # (i + 0.5) / valid, as clickpose.model.keypoint_heatmap.cell_centres places them).
    extent = torch.stack([valid_w / w, valid_h / h], -1).to(keypoints.dtype)  # (B, 2)
    grid = keypoints * extent[:, None, None] * 2.0 - 1.0                     # (B, N, K, 2)
    grid = grid.permute(0, 2, 1, 3).reshape(batch * num_types, -1, 1, 2)     # (B*K, N, 1, 2)
    maps = logits.float().sigmoid().reshape(batch * num_types, 1, h, w)
    sampled = F.grid_sample(maps, grid.float(), align_corners=False, padding_mode="zeros")
    return sampled.view(batch, num_types, -1).transpose(1, 2)               # (B, N, K)


def person_scores(person_logits: Tensor, support: Tensor | None) -> Tensor:
    """(B, N, 1) person logits and (B, N, K) heatmap support (or None) -> (B, N) scores."""
    probability = person_logits[..., 0].float().sigmoid()
    if support is None:
        return probability
    mean_support = support.mean(-1).clamp(min=0.0)
    return (probability * mean_support ** SUPPORT_WEIGHT) ** (1.0 / (1.0 + SUPPORT_WEIGHT))


def ranked_distinct(boxes_cxcywh: Tensor, scores: Tensor, iou: float | None) -> Tensor:
    """Indices of one image's persons, best first, without the lower-scoring duplicates:
    box NMS at `iou` (None keeps every person). boxes (N, 4) cxcywh, scores (N,)."""
    if iou is None or len(scores) == 0:
        return torch.argsort(scores, descending=True)
    return nms(box_cxcywh_to_xyxy(boxes_cxcywh.float()), scores.float(), iou)
