"""How good each predicted pose is, learned: the OKS it has with its best ground truth.

OKS AP ranks a model's persons by their scores, and what it rewards is the quality of each
pose. The decoder's person logit learns something else (is this query the one matched to a
person); the heatmap support (clickpose.model.person_score) says whether the keypoints sit on
evidence, not whether they are the right ones. This head reads what the decoder already gives
for a person (its logit, box size, keypoints within the box, visibility logits, the heatmaps'
support at each keypoint), detached so that it never pulls on the poses, and learns each
pose's OKS with its best-overlapping ground truth as a soft binary target.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clickpose.model.layers import MLP
from clickpose.model.losses import pairwise_oks
from clickpose.model.matcher import PaddedTargets

KEYPOINT_FEATURES = 4  # x and y within the box, visibility logit, heatmap support
PERSON_FEATURES = 3    # person logit, box width and height


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

    def forward(self, person_logits: Tensor, boxes: Tensor, keypoints: Tensor,
                visibility_logits: Tensor, support: Tensor) -> Tensor:
        """person_logits (B, N, 1), boxes (B, N, 4) cxcywh, keypoints (B, N, K, 2), all
        normalized; visibility_logits (B, N, K); support (B, N, K) in [0, 1].
        Returns (B, N) quality logits (sigmoid: the predicted OKS)."""
        size = boxes[..., None, 2:].clamp(min=1e-3)
        in_box = (keypoints - boxes[..., None, :2]) / size                  # (B, N, K, 2)
        per_keypoint = torch.cat([in_box, visibility_logits[..., None], support[..., None]],
                                 -1).detach().float()                       # (B, N, K, 4)
        person = torch.cat([person_logits, boxes[..., 2:]], -1).detach().float()
        hidden = torch.einsum("bnkf,kfh->bnh", per_keypoint, self.keypoint_weight)
        hidden = hidden / per_keypoint.shape[2] + self.person(person)
        return self.rest(F.relu(hidden))[..., 0]


@torch.no_grad()
def quality_targets(keypoints: Tensor, padded: PaddedTargets, sigmas: Tensor) -> Tensor:
    """(B, N) OKS of each predicted pose (B, N, K, 2) with the ground-truth person of its
    image it fits best; 0 in an image without persons."""
    if padded.keypoints.shape[1] == 0:
        return keypoints.new_zeros(keypoints.shape[:2])
    oks = pairwise_oks(keypoints.float(), padded.keypoints, padded.keypoint_weights,
                       padded.area, sigmas, padded.scale)                    # (B, N, G)
    return oks.amax(-1).clamp(0.0, 1.0)


def quality_loss(quality_logits: Tensor, keypoints: Tensor, padded: PaddedTargets,
                 sigmas: Tensor) -> Tensor:
    """Binary cross-entropy of the predicted against the true OKS, mean over persons."""
    target = quality_targets(keypoints, padded, sigmas)
    return F.binary_cross_entropy_with_logits(quality_logits.float(), target)
