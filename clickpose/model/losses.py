"""Loss and cost helpers shared by the matcher and the criterion: OKS, focal loss, boxes.

Keypoints and boxes are normalized by each image's (w, h). OKS is computed on pixel
distances (normalized offsets times the image size) so that it is the COCO similarity
(pycocotools: exp(-d^2 / (2 s^2 (2 sigma)^2)) averaged over labelled keypoints), whatever
the image's aspect ratio.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou, sigmoid_focal_loss

from clickpose.model.box_ops import batched_box_iou

__all__ = [
    "batched_generalized_box_iou",
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "focal_class_cost",
    "generalized_box_iou",
    "keypoint_l1",
    "oks_similarity",
    "pairwise_oks",
    "sigmoid_focal_loss",
]


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    return box_convert(boxes, "cxcywh", "xyxy")


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    return box_convert(boxes, "xyxy", "cxcywh")


def _oks_terms(sq_dist: Tensor, areas: Tensor, sigmas: Tensor) -> Tensor:
    # sq_dist (..., K) pixel^2, areas broadcastable (..., 1) pixel^2, sigmas (K,)
    variances = (2 * sigmas) ** 2
    return torch.exp(-sq_dist / (2 * areas.clamp(min=1.0) * variances))


def oks_similarity(pred: Tensor, gt: Tensor, weights: Tensor, areas: Tensor, sigmas: Tensor,
                   scale: Tensor) -> Tensor:
    """OKS of each prediction with its own ground truth.

    pred, gt (N, K, 2) normalized; weights (N, K) 1 where the keypoint is labelled;
    areas (N,) pixel^2; sigmas (K,); scale (N, 2) image (w, h) in pixels. Returns (N,);
    a person without labelled keypoints gets 0.
    """
    sq = (((pred - gt) * scale[:, None, :]) ** 2).sum(-1)  # (N, K)
    terms = _oks_terms(sq, areas[:, None], sigmas) * weights
    return terms.sum(-1) / weights.sum(-1).clamp(min=1e-6)


def pairwise_oks(pred: Tensor, gt: Tensor, weights: Tensor, areas: Tensor, sigmas: Tensor,
                 scale: Tensor) -> Tensor:
    """OKS of every prediction with every ground truth of the same image, over a batch.

    pred (B, P, K, 2), gt (B, G, K, 2) normalized; weights (B, G, K); areas (B, G);
    scale (B, 2) image (w, h). Returns (B, P, G).
    """
    diff = (pred[:, :, None] - gt[:, None]) * scale[:, None, None, None, :]  # (B, P, G, K, 2)
    sq = (diff ** 2).sum(-1)
    terms = _oks_terms(sq, areas[:, None, :, None], sigmas) * weights[:, None]
    return terms.sum(-1) / weights.sum(-1).clamp(min=1e-6)[:, None]


def batched_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU of every box of boxes1 (B, P, 4) with every box of boxes2 (B, G, 4), both xyxy,
    per batch item: (B, P, G). torchvision's generalized_box_iou, over a batch."""
    iou, union = batched_box_iou(boxes1, boxes2)
    a, b = boxes1[:, :, None], boxes2[:, None]
    hull_wh = (torch.max(a[..., 2:], b[..., 2:]) - torch.min(a[..., :2], b[..., :2])).clamp(min=0)
    hull = hull_wh[..., 0] * hull_wh[..., 1]
    return iou - (hull - union) / hull


def focal_class_cost(logits: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Matching cost of calling each query a person: focal loss of 'positive' minus 'negative'.

    logits (P,) -> (P,); lower is better for confident queries.
    """
    prob = logits.sigmoid()
    neg = (1 - alpha) * prob ** gamma * -(1 - prob + 1e-8).log()
    pos = alpha * (1 - prob) ** gamma * -(prob + 1e-8).log()
    return pos - neg


def keypoint_l1(pred: Tensor, gt: Tensor, weights: Tensor) -> Tensor:
    """Visibility-weighted L1 of normalized coordinates, summed over keypoints: (N, K, 2) -> (N,)."""
    return (F.l1_loss(pred, gt, reduction="none") * weights[..., None]).sum((-1, -2))
