"""Where each person's keypoints are expected in its box, read from the person's own query.

Each person's start is the heatmaps' soft-argmax under a Gaussian prior around every
keypoint type's expected place in the box (clickpose.model.keypoint_heatmap.heatmap_start).
Without this head that place is one learned layout per type, the same for every person:
a raised arm or a person seen from the side is far from it, and the broad prior then
averages the right peak with a neighbour's or the other wrist's. The human decoder's
query has already looked at the person, so a small MLP on it moves the layout per person
(CenterNet's multi-person poses are read the same way: a regressed pose, then the nearest
heatmap evidence). Its last layer starts at zero: a new head starts at the shared layout.
"""
from __future__ import annotations

from torch import Tensor, nn

from clickpose.model.layers import MLP, zero_last_layer


class PersonLayoutHead(nn.Module):
    """(..., D) person query content -> (..., K, 2) change of the shared layout's logits."""

    def __init__(self, dim: int, num_keypoints: int):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.mlp = MLP(dim, dim, 2 * num_keypoints, 3)
        zero_last_layer(self.mlp)

    def forward(self, content: Tensor) -> Tensor:
        return self.mlp(content).unflatten(-1, (self.num_keypoints, 2))
