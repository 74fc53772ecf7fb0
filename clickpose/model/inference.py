"""Eval transform (image -> normalized tensor) and model outputs -> Poses in pixels."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from clickpose.model.box_ops import box_cxcywh_to_xyxy
from clickpose.model.person_score import person_scores, ranked_distinct
from clickpose.model.presets import ModelConfig
from clickpose.poses import Poses

# A keypoint whose confidence reaches this is reported visible (COCO v = 2), else v = 0.
VISIBLE_THRESHOLD = 0.5


def load_rgb(image) -> np.ndarray:
    """PIL image, (H, W, 3) uint8 array or a path -> (H, W, 3) uint8 RGB array."""
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return np.asarray(im.convert("RGB")).copy()
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB")).copy()
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image has shape {array.shape}; expected (H, W, 3) RGB")
    return array.astype(np.uint8, copy=False)


def resized_size(h: int, w: int, image_size: int, max_size: int) -> tuple[int, int]:
    """Shorter side to image_size, longer side at most max_size, aspect kept."""
    scale = min(image_size / min(h, w), max_size / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


@dataclass
class EvalTransform:
    image_size: int
    max_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_config(cls, config: ModelConfig) -> EvalTransform:
        return cls(config.image_size, config.max_size, config.pixel_mean, config.pixel_std)

    def __call__(self, image, device: torch.device | str = "cpu"
                 ) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """-> images (1, 3, h, w), mask (1, h, w) all False, original size (H, W)."""
        rgb = load_rgb(image)
        h, w = rgb.shape[:2]
        new_h, new_w = resized_size(h, w, self.image_size, self.max_size)
        resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR))
        x = torch.from_numpy(resized.copy()).permute(2, 0, 1).float().div_(255.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        x = ((x - mean) / std)[None].to(device)
        mask = torch.zeros(1, new_h, new_w, dtype=torch.bool, device=device)
        return x, mask, (h, w)


def visibility_from_scores(keypoint_scores: np.ndarray) -> np.ndarray:
    return np.where(keypoint_scores >= VISIBLE_THRESHOLD, 2, 0).astype(np.int64)


def outputs_to_poses(outputs: dict, sizes, duplicate_iou: float | None = None) -> list[Poses]:
    """Per image: persons best first (outputs["pred_scores"] when the model ranked them,
    else the person probability), duplicates over `duplicate_iou` box IoU dropped;
    keypoints and boxes in original pixels."""
    logits, boxes, keypoints, visibility = (
        outputs[k].detach().float().cpu()
        for k in ("pred_logits", "pred_boxes", "pred_keypoints", "pred_visibility"))
    all_scores = (outputs["pred_scores"].detach().float().cpu() if "pred_scores" in outputs
                  else person_scores(logits, None))
    result = []
    for b, size in enumerate(sizes):
        h, w = (float(v) for v in size)
        scores = all_scores[b]
        order = ranked_distinct(boxes[b], scores, duplicate_iou)
        kp = keypoints[b, order] * torch.tensor([w, h])
        kp_scores = visibility[b, order].sigmoid()
        xyxy = box_cxcywh_to_xyxy(boxes[b, order]) * torch.tensor([w, h, w, h])
        kp_scores_np = kp_scores.numpy().astype(np.float64)
        result.append(Poses(
            keypoints=kp.numpy().astype(np.float64),
            keypoint_scores=kp_scores_np,
            visibility=visibility_from_scores(kp_scores_np),
            boxes=xyxy.numpy().astype(np.float64),
            scores=scores[order].numpy().astype(np.float64),
        ))
    return result
