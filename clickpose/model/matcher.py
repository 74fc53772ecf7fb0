"""Hungarian matching of predicted persons to ground-truth persons (one-to-one).

Costs as in Click-Pose / ED-Pose: a focal-style person-score cost plus, for keypoint
decoder outputs, a visibility-weighted keypoint L1 and an OKS cost; for outputs without
keypoints (human-detection layers, encoder proposals), box L1 and GIoU. The official
matcher drops the box costs once keypoints are predicted (`box_cost_with_keypoints=True`
keeps them); persons annotated with a box only are still matched by their box.

The costs of a whole batch are computed at once on targets padded to the batch's largest
person count (a training step matches a dozen outputs: one loop of small per-image tensor
ops each would cost more than the assignment itself); scipy then solves each image's
unpadded block.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from clickpose.model.losses import (
    batched_generalized_box_iou,
    box_cxcywh_to_xyxy,
    focal_class_cost,
    pairwise_oks,
)


@dataclass
class PaddedTargets:
    """Normalized targets (criterion.normalize_targets) of a batch padded to G persons."""
    boxes: Tensor             # (B, G, 4) cxcywh
    keypoints: Tensor         # (B, G, K, 2)
    keypoint_weights: Tensor  # (B, G, K); 0 for padding
    area: Tensor              # (B, G); 1 for padding
    scale: Tensor             # (B, 2) image (w, h) pixels
    counts: list[int]         # real persons per image

    @classmethod
    def of(cls, targets: list[dict], device: torch.device | None = None) -> PaddedTargets:
        device = device or targets[0]["boxes"].device
        num_keypoints = targets[0]["keypoint_weights"].shape[-1]
        counts = [len(t["boxes"]) for t in targets]
        size = (len(targets), max(counts, default=0))
        boxes = torch.full((*size, 4), 0.5, device=device)
        keypoints = torch.zeros((*size, num_keypoints, 2), device=device)
        weights = torch.zeros((*size, num_keypoints), device=device)
        area = torch.ones(size, device=device)
        for b, (t, n) in enumerate(zip(targets, counts)):
            if n:
                boxes[b, :n] = t["boxes"]
                keypoints[b, :n] = t["keypoints"]
                weights[b, :n] = t["keypoint_weights"]
                area[b, :n] = t["area"]
        scale = torch.stack([t["scale"].to(device).float() for t in targets])
        return cls(boxes, keypoints, weights, area, scale, counts)


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
    def batch_costs(self, outputs: dict, padded: PaddedTargets) -> Tensor:
        """(B, P, G) cost of every prediction against every (padded) target person."""
        logits = outputs["pred_logits"][..., 0].float()
        boxes = outputs["pred_boxes"].float()
        cost = self.cost_class * focal_class_cost(logits, self.focal_alpha)[..., None]
        box_cost = self.cost_bbox * torch.cdist(boxes, padded.boxes, p=1) - \
            self.cost_giou * batched_generalized_box_iou(box_cxcywh_to_xyxy(boxes),
                                                         box_cxcywh_to_xyxy(padded.boxes))
        keypoints = outputs.get("pred_keypoints")
        if keypoints is None:
            return cost + box_cost
        if not self.box_cost_with_keypoints:
            # A person annotated with a box only has no keypoint cost: its box decides.
            box_cost = box_cost * (padded.keypoint_weights.sum(-1) == 0)[:, None, :]
        return cost + box_cost + self.keypoint_costs(keypoints.float(), padded)

    def keypoint_costs(self, pred: Tensor, padded: PaddedTargets) -> Tensor:
        """Weighted keypoint L1 plus (1 - OKS): pred (B, P, K, 2) -> (B, P, G)."""
        diff = pred[:, :, None] - padded.keypoints[:, None]                # (B, P, G, K, 2)
        l1 = (diff.abs().sum(-1) * padded.keypoint_weights[:, None]).sum(-1)
        oks = pairwise_oks(pred, padded.keypoints, padded.keypoint_weights, padded.area,
                           self.sigmas.to(pred.device), padded.scale)
        return self.cost_keypoints * l1 + self.cost_oks * (1 - oks.clamp(min=1e-6))

    @torch.no_grad()
    def cost_matrix(self, outputs: dict, b: int, target: dict) -> Tensor:
        """(P, G) cost of image b's predictions against its normalized targets."""
        one = {k: v[b:b + 1] for k, v in outputs.items()
               if k in ("pred_logits", "pred_boxes", "pred_keypoints")}
        return self.batch_costs(one, PaddedTargets.of([target], one["pred_boxes"].device))[0]

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list[dict], padded: PaddedTargets | None = None
                ) -> list[tuple[Tensor, Tensor]]:
        """targets: normalized (see criterion.normalize_targets); `padded`: the same, padded
        (built here when not given: a caller matching many outputs builds it once). Returns
        per image (prediction indices, target indices), both int64 of length min(P, G)."""
        empty = torch.zeros(0, dtype=torch.int64)
        if not any(len(t["boxes"]) for t in targets):
            return [(empty, empty) for _ in targets]
        padded = padded or PaddedTargets.of(targets, outputs["pred_boxes"].device)
        costs = self.batch_costs(outputs, padded).cpu()
        costs = torch.nan_to_num(costs, nan=1e6, posinf=1e6, neginf=-1e6).numpy()
        indices = []
        for b, count in enumerate(padded.counts):
            if count == 0:
                indices.append((empty, empty))
                continue
            rows, cols = linear_sum_assignment(costs[b, :, :count])
            indices.append((torch.as_tensor(rows, dtype=torch.int64),
                            torch.as_tensor(cols, dtype=torch.int64)))
        return indices
