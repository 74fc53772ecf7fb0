"""Which predicted person a simulated annotator corrects toward which ground-truth person.

As the official Click-Pose NoC evaluation (models/clickpose/matcher.py, HungarianMatcher with
the clickpose config): the ground truth is every non-crowd person with keypoints and a
non-empty box; the predictions are the top-k (20) by score; the cost is
    2 * focal class cost + 10 * L1 keypoint distance + 4 * (1 - OKS)
on coordinates normalized by the image size (visibility 0/1 as weights, area / (W * H)),
box costs off; scipy's linear_sum_assignment matches once, before the first click.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

COST_CLASS, COST_KEYPOINTS, COST_OKS = 2.0, 10.0, 4.0
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0
TOPK = 20


@dataclass
class TargetPersons:
    """The ground-truth persons of one image that clicks correct toward."""
    keypoints: np.ndarray  # (N, K, 2) pixels
    visibility: np.ndarray  # (N, K) int COCO v
    boxes: np.ndarray  # (N, 4) xyxy pixels, clamped to the image
    areas: np.ndarray  # (N,) pixels^2 (COCO 'area')
    annotation_ids: list[int]
    width: int
    height: int

    @property
    def num_persons(self) -> int:
        return len(self.areas)

    @property
    def labelled(self) -> np.ndarray:
        return self.visibility > 0

    @classmethod
    def from_annotations(cls, annotations: list[dict], width: int, height: int,
                         num_keypoints: int) -> TargetPersons:
        """Non-crowd persons with keypoints whose box, clamped to the image, is not empty."""
        kept = []
        for a in annotations:
            if a.get("iscrowd", 0) or a.get("num_keypoints", 0) == 0:
                continue
            x, y, w, h = a["bbox"]
            x0, x1 = min(max(x, 0), width), min(max(x + w, 0), width)
            y0, y1 = min(max(y, 0), height), min(max(y + h, 0), height)
            if x1 > x0 and y1 > y0:
                kept.append((a, [x0, y0, x1, y1]))
        kpts = np.array([a["keypoints"] for a, _ in kept], dtype=np.float64)
        kpts = kpts.reshape(len(kept), num_keypoints, 3)
        return cls(keypoints=kpts[..., :2], visibility=kpts[..., 2].astype(np.int64),
                   boxes=np.array([b for _, b in kept], dtype=np.float64).reshape(-1, 4),
                   areas=np.array([a["area"] for a, _ in kept], dtype=np.float64),
                   annotation_ids=[a["id"] for a, _ in kept], width=width, height=height)


def top_scoring(scores: np.ndarray, topk: int = TOPK) -> np.ndarray:
    """Indices of the `topk` best scores, best first (the queries the official loop keeps)."""
    return np.argsort(-np.asarray(scores), kind="stable")[:topk]


def official_cost(keypoints: np.ndarray, scores: np.ndarray, targets: TargetPersons,
                  sigmas: np.ndarray) -> np.ndarray:
    """(P, K, 2) pixel keypoints and (P,) scores -> (P, N) matching cost."""
    size = np.array([targets.width, targets.height], dtype=np.float64)
    pred = np.asarray(keypoints, dtype=np.float64) / size            # (P, K, 2) in [0, 1]
    gt = targets.keypoints / size                                    # (N, K, 2)
    vis = targets.labelled.astype(np.float64)                        # (N, K)
    prob = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    neg = (1 - FOCAL_ALPHA) * prob ** FOCAL_GAMMA * -np.log(1 - prob + 1e-8)
    pos = FOCAL_ALPHA * (1 - prob) ** FOCAL_GAMMA * -np.log(prob + 1e-8)
    cost_class = (pos - neg)[:, None]                                # (P, 1)
    l1 = np.abs(pred[:, None] - gt[None]).sum(-1)                    # (P, N, K)
    cost_keypoints = (l1 * vis[None]).sum(-1)                        # (P, N)
    variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
    sq = ((pred[:, None] - gt[None]) ** 2).sum(-1)                   # (P, N, K)
    area = targets.areas / (targets.width * targets.height)
    e = sq / (area[None, :, None] * variances[None, None] * 2)
    oks = (np.exp(-e) * vis[None]).sum(-1) / (vis.sum(-1)[None] + 1e-6)
    cost_oks = 1 - np.clip(oks, 1e-6, None)
    return COST_CLASS * cost_class + COST_KEYPOINTS * cost_keypoints + COST_OKS * cost_oks


def match_persons(keypoints: np.ndarray, scores: np.ndarray, targets: TargetPersons,
                  sigmas: np.ndarray, topk: int = TOPK) -> list[tuple[int, int]]:
    """[(predicted person, ground-truth person)] pairs, predicted indices into the full list."""
    candidates = top_scoring(scores, topk)
    if len(candidates) == 0 or targets.num_persons == 0:
        return []
    cost = official_cost(np.asarray(keypoints)[candidates], np.asarray(scores)[candidates],
                         targets, sigmas)
    rows, cols = linear_sum_assignment(cost)
    return [(int(candidates[r]), int(c)) for r, c in zip(rows, cols)]


def keypoint_errors(keypoints: np.ndarray, target: np.ndarray, visibility: np.ndarray,
                    width: int, height: int, error: str = "l2px") -> np.ndarray:
    """(K, 2) prediction vs (K, 2) ground truth -> (K,) error, 0 where not labelled.

    'l2px': Euclidean distance in pixels; 'l1norm': the official loop's L1 distance on
    coordinates normalized by the image size. Either way the worst keypoint is the argmax.
    """
    labelled = (np.asarray(visibility) > 0).astype(np.float64)
    delta = np.asarray(keypoints, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    if error == "l2px":
        return np.sqrt((delta ** 2).sum(-1)) * labelled
    if error == "l1norm":
        return (np.abs(delta) / np.array([width, height], dtype=np.float64)).sum(-1) * labelled
    raise ValueError(f"unknown keypoint error '{error}'; use 'l2px' or 'l1norm'")
