"""Hungarian matching of predicted persons to ground-truth persons (one-to-one).

Costs as in Click-Pose / ED-Pose: a focal-style person-score cost plus, for keypoint
decoder outputs, a visibility-weighted keypoint L1 and an OKS cost; for outputs without
keypoints (human-detection layers, encoder proposals), box L1 and GIoU. The official
matcher drops the box costs once keypoints are predicted (`box_cost_with_keypoints=True`
keeps them); persons annotated with a box only are still matched by their box.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from clickpose.model.losses import (
    box_cxcywh_to_xyxy,
    focal_class_cost,
    generalized_box_iou,
    pairwise_oks,
)


class HungarianMatcher(nn.Module):
    def __init__(self, sigmas, cost_class: float = 2.0, cost_bbox: float = 5.0,
                 cost_giou: float = 2.0, cost_keypoints: float = 10.0, cost_oks: float = 4.0,
                 focal_alpha: float = 0.25, box_cost_with_keypoints: bool = False):
        super().__init__()
        self.register_buffer("sigmas", torch.as_tensor(np.asarray(sigmas), dtype=torch.float32),
                             persistent=False)
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.cost_keypoints = cost_keypoints
        self.cost_oks = cost_oks
        self.focal_alpha = focal_alpha
        self.box_cost_with_keypoints = box_cost_with_keypoints

    @torch.no_grad()
    def cost_matrix(self, outputs: dict, b: int, target: dict) -> Tensor:
        """(P, G) cost of image b's predictions against its normalized targets."""
        logits = outputs["pred_logits"][b, :, 0].float()
        boxes = outputs["pred_boxes"][b].float()
        cost = self.cost_class * focal_class_cost(logits, self.focal_alpha)[:, None]
        cost = cost.expand(-1, len(target["boxes"])).clone()
        box_cost = self.cost_bbox * torch.cdist(boxes, target["boxes"], p=1) - self.cost_giou * \
            generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target["boxes"]))
        keypoints = outputs.get("pred_keypoints")
        if keypoints is None or self.box_cost_with_keypoints:
            cost += box_cost
        else:
            # A person annotated with a box only has no keypoint cost: its box decides.
            box_only = target["keypoint_weights"].sum(-1) == 0
            cost[:, box_only] += box_cost[:, box_only]
        if keypoints is not None:
            pred = keypoints[b].float()  # (P, K, 2)
            weights = target["keypoint_weights"]  # (G, K)
            l1 = ((pred[:, None] - target["keypoints"][None]).abs().sum(-1) * weights[None]).sum(-1)
            oks = pairwise_oks(pred, target["keypoints"], weights, target["area"],
                               self.sigmas.to(pred.device), target["scale"])
            cost += self.cost_keypoints * l1 + self.cost_oks * (1 - oks.clamp(min=1e-6))
        return cost

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list[dict]) -> list[tuple[Tensor, Tensor]]:
        """targets: normalized (see criterion.normalize_targets). Returns per image
        (prediction indices, target indices), both int64 of length min(P, G)."""
        indices = []
        for b, target in enumerate(targets):
            if len(target["boxes"]) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty))
                continue
            cost = self.cost_matrix(outputs, b, target).cpu()
            cost = torch.nan_to_num(cost, nan=1e6, posinf=1e6, neginf=-1e6)
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64),
                            torch.as_tensor(cols, dtype=torch.int64)))
        return indices
