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

__all__ = [
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
    """OKS of every prediction with every ground truth of one image.

    pred (P, K, 2), gt (G, K, 2) normalized; weights (G, K); areas (G,); scale (2,) (w, h).
    Returns (P, G).
    """
    diff = (pred[:, None] - gt[None]) * scale  # (P, G, K, 2)
    sq = (diff ** 2).sum(-1)
    terms = _oks_terms(sq, areas[None, :, None], sigmas) * weights[None]
    return terms.sum(-1) / weights.sum(-1).clamp(min=1e-6)[None]


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
