"""Each detected person's own keypoint heatmaps: where this person's left wrist is.

The keypoint heatmaps (clickpose.model.keypoint_heatmap) are one map per keypoint type for
the whole image: a person's start takes its type's soft-argmax under a broad prior around
the type's usual place in the box, so a neighbour's wrist, or the person's other wrist,
draws the start to it or between. Here each person's query writes the weights of a 1x1
convolution (dynamic filters, as CondInst does for masks and InsPose for keypoints) over
the heatmap head's features and the cells' place relative to its box (x, y, x^2, y^2 in box
units), and the result is added to the type heatmaps' logits. The filters start at zero,
so a person's maps start as the type maps and learn, from that person's keypoints alone,
to fade the peaks that are not its own.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from clickpose.model.keypoint_heatmap import cell_centres

RELATIVE_TERMS = 4  # x, y, x^2, y^2 of each cell relative to the box, in box sizes
RELATIVE_RANGE = 1.5  # ... within this many box sizes of its centre (farther: as far)


class PersonHeatmapHead(nn.Module):
    def __init__(self, dim: int, num_keypoints: int, feature_dim: int = 16):
        super().__init__()
        self.num_keypoints, self.feature_dim = num_keypoints, feature_dim
        self.features = nn.Conv2d(dim, feature_dim, 1)
        self.controller = nn.Linear(dim, num_keypoints * (feature_dim + RELATIVE_TERMS + 1))
        nn.init.zeros_(self.controller.weight)
        nn.init.zeros_(self.controller.bias)

    def forward(self, features: Tensor, type_logits: Tensor, mask: Tensor, content: Tensor,
                boxes: Tensor) -> Tensor:
        """features (B, C, h, w) the heatmap head's; type_logits (B, K, h, w); mask (B, h, w)
        True on padding; content (B, N, D) and boxes (B, N, 4) cxcywh normalized, the
        persons'. Returns (B, N, K, h, w) logits."""
        batch, persons = content.shape[:2]
        params = self.controller(content).view(batch, persons, self.num_keypoints, -1)
        weights, relative, bias = params.split([self.feature_dim, RELATIVE_TERMS, 1], -1)
        logits = torch.einsum("bnkf,bfyx->bnkyx", weights, self.features(features))
        xs, ys = cell_centres(mask)
        size = boxes[..., 2:].clamp(min=1e-3)
        # Bounded: a small person's far cells would otherwise reach hundreds of box sizes
        # squared, and their gradients would take the whole clipped step.
        rel_x = ((xs[:, None] - boxes[..., :1]) / size[..., :1]).clamp(-RELATIVE_RANGE, RELATIVE_RANGE)
        rel_y = ((ys[:, None] - boxes[..., 1:2]) / size[..., 1:]).clamp(-RELATIVE_RANGE, RELATIVE_RANGE)
        along_x = relative[..., :1] * rel_x[:, :, None] + relative[..., 2:3] * rel_x[:, :, None] ** 2
        along_y = relative[..., 1:2] * rel_y[:, :, None] + relative[..., 3:] * rel_y[:, :, None] ** 2
        logits = logits + along_x[..., None, :] + along_y[..., :, None] + bias[..., None]
        return type_logits[:, None] + logits
