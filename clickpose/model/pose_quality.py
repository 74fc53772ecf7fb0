"""How good each predicted pose is, learned: the OKS it has with its best ground truth.

OKS AP ranks a model's persons by their scores, and what it rewards is the quality of each
pose. The decoder's person logit learns something else (is this query the one matched to a
person); the heatmap support (clickpose.model.person_score) says whether the keypoints sit on
evidence, not whether they are the right ones. This head reads what the decoder already gives
for a person (its logit, box size, keypoints within the box, visibility logits, the heatmaps'
support at each keypoint, and how much its box overlaps a person ranked above it), detached
so that it never pulls on the poses, and learns each pose's OKS as COCO AP counts it: the
persons, in the order of their logits, each take the ground-truth person they fit best
among those left, so that a duplicate of a person ranked above it learns 0 (AP counts it a
false positive) while a good pose ranked low by its logit learns its OKS.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clickpose.model.box_ops import batched_box_iou, box_cxcywh_to_xyxy
from clickpose.model.layers import MLP
from clickpose.model.losses import pairwise_oks
from clickpose.model.matcher import PaddedTargets

KEYPOINT_FEATURES = 4  # x and y within the box, visibility logit, heatmap support
PERSON_FEATURES = 4    # person logit, box width and height, overlap with a person above
# logit(0.1), about the mean target (a few persons among many queries): an untrained head
# calls every pose poor, so that a young model offers no persons (the annotator says to draw
# them) rather than all of its queries at OKS 0.5, and it starts near what it will learn.
PRIOR_LOGIT = -2.197
TAKES_PERSON_OKS = 0.5  # a pose takes its ground-truth person from those below it (AP's lowest)


class PoseQualityHead(nn.Module):
    """An MLP on the person's features and every keypoint's. Its first layer keeps one weight
    table per keypoint type, averaged over the types (a linear map of all the features at
    once): a model adapted to new keypoints grows the table from their parents' rows
    (clickpose.model.checkpoint.adapt_state) instead of learning the head again."""

    def __init__(self, num_keypoints: int, hidden_dim: int = 64):
        super().__init__()
        bound = 1.0 / math.sqrt(KEYPOINT_FEATURES)  # nn.Linear's initialisation
        self.keypoint_weight = nn.Parameter(
            torch.empty(num_keypoints, KEYPOINT_FEATURES, hidden_dim).uniform_(-bound, bound))
        self.person = nn.Linear(PERSON_FEATURES, hidden_dim)
        self.rest = MLP(hidden_dim, hidden_dim, 1, 2)
        nn.init.constant_(self.rest.layers[-1].bias, PRIOR_LOGIT)

    def forward(self, person_logits: Tensor, boxes: Tensor, keypoints: Tensor,
                visibility_logits: Tensor, support: Tensor, first: Tensor | None = None
                ) -> Tensor:
        """person_logits (B, N, 1), boxes (B, N, 4) cxcywh, keypoints (B, N, K, 2), all
        normalized; visibility_logits (B, N, K); support (B, N, K) in [0, 1]; first (B, N)
        bool, persons that rank above every other (clicked ones, in a session).
        Returns (B, N) quality logits (sigmoid: the predicted OKS)."""
        size = boxes[..., None, 2:].clamp(min=1e-3)
        in_box = (keypoints - boxes[..., None, :2]) / size                  # (B, N, K, 2)
        per_keypoint = torch.cat([in_box, visibility_logits[..., None], support[..., None]],
                                 -1).detach().float()                       # (B, N, K, 4)
        overlap = overlap_above(boxes, person_logits, first)[..., None]
        person = torch.cat([person_logits, boxes[..., 2:], overlap], -1).detach().float()
        hidden = torch.einsum("bnkf,kfh->bnh", per_keypoint, self.keypoint_weight)
        hidden = hidden / per_keypoint.shape[2] + self.person(person)
        return self.rest(F.relu(hidden))[..., 0]


def ranked_above(person_logits: Tensor, first: Tensor | None = None) -> Tensor:
    """(B, N, N) bool, [b, i, j]: person j ranks above person i: persons in `first` (B, N)
    above the others, then by a higher person logit."""
    logit = person_logits[..., 0].detach().float()
    above = logit[:, None, :] > logit[:, :, None]
    if first is None:
        return above
    first = first.to(torch.bool)
    first_i, first_j = first[:, :, None], first[:, None, :]
    return (first_j & ~first_i) | ((first_j == first_i) & above)


@torch.no_grad()
def overlap_above(boxes: Tensor, person_logits: Tensor, first: Tensor | None = None) -> Tensor:
    """(B, N) each person's largest box IoU with a person ranked above it (ranked_above):
    near 1 for a duplicate of a better-ranked person, what NMS would drop."""
    if boxes.shape[1] == 0:
        return boxes.new_zeros(boxes.shape[:2])
    xyxy = box_cxcywh_to_xyxy(boxes.float())
    iou, _ = batched_box_iou(xyxy, xyxy)
    return (iou * ranked_above(person_logits, first)).amax(-1)


@torch.no_grad()
def quality_targets(keypoints: Tensor, padded: PaddedTargets, sigmas: Tensor,
                    person_logits: Tensor | None = None) -> Tensor:
    """(B, N) OKS of each predicted pose (B, N, K, 2) with the ground-truth person it fits
    best among those that no person ranked above it (by `person_logits`, (B, N, 1)) took
    with an OKS of TAKES_PERSON_OKS or more; without logits, with any of its image's
    persons. 0 in an image without persons."""
    batch, num = keypoints.shape[:2]
    if padded.keypoints.shape[1] == 0:
        return keypoints.new_zeros((batch, num))
    oks = pairwise_oks(keypoints.float(), padded.keypoints, padded.keypoint_weights,
                       padded.area, sigmas, padded.scale).clamp(0.0, 1.0)   # (B, N, G)
    if person_logits is None:
        return oks.amax(-1)
    order = person_logits[..., 0].argsort(-1, descending=True)
    rows = torch.arange(batch, device=keypoints.device)
    taken = torch.zeros(oks.shape[0], oks.shape[2], dtype=torch.bool, device=oks.device)
    target = oks.new_zeros((batch, num))
    for rank in range(num):
        person = order[:, rank]
        best, fit = oks[rows, person].masked_fill(taken, 0.0).max(-1)
        target[rows, person] = best
        taken[rows, fit] |= best >= TAKES_PERSON_OKS
    return target


def quality_loss(quality_logits: Tensor, keypoints: Tensor, padded: PaddedTargets,
                 sigmas: Tensor, person_logits: Tensor | None = None) -> Tensor:
    """Binary cross-entropy of the predicted against the true OKS, mean over persons."""
    target = quality_targets(keypoints, padded, sigmas, person_logits)
    return F.binary_cross_entropy_with_logits(quality_logits.float(), target)
