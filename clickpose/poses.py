"""Poses: the multi-person prediction of one image, in original-image pixels.

The common currency between the model, the interactive session, the NoC simulator, the
selection scores and the annotator. COCO results ({image_id, category_id, keypoints, score})
convert both ways.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass
class Poses:
    keypoints: np.ndarray        # (P, K, 2) float: x, y in original-image pixels
    keypoint_scores: np.ndarray  # (P, K) float in [0, 1]: confidence that the point is right
    visibility: np.ndarray       # (P, K) int: COCO v (0 not labelled, 1 occluded, 2 visible)
    boxes: np.ndarray            # (P, 4) float: x0, y0, x1, y1 pixels
    scores: np.ndarray           # (P,) float: person score

    def __post_init__(self) -> None:
        p = len(self.scores)
        for name, arr, tail in (("keypoints", self.keypoints, 2), ("boxes", self.boxes, None)):
            if arr.shape[0] != p or (tail is not None and arr.shape[-1] != tail):
                raise ValueError(f"Poses.{name} has shape {arr.shape} for {p} persons")

    @property
    def num_persons(self) -> int:
        return len(self.scores)

    @property
    def num_keypoints(self) -> int:
        return self.keypoints.shape[1]

    @classmethod
    def empty(cls, num_keypoints: int) -> Poses:
        return cls(np.zeros((0, num_keypoints, 2)), np.zeros((0, num_keypoints)),
                   np.zeros((0, num_keypoints), dtype=np.int64), np.zeros((0, 4)), np.zeros(0))

    def copy(self) -> Poses:
        return replace(self, **{f: getattr(self, f).copy() for f in
                                ("keypoints", "keypoint_scores", "visibility", "boxes", "scores")})

    def select(self, index) -> Poses:
        """A subset of persons (boolean mask or index array), order kept."""
        return Poses(self.keypoints[index], self.keypoint_scores[index], self.visibility[index],
                     self.boxes[index], self.scores[index])

    def to_coco_results(self, image_id: int, category_id: int = 1) -> list[dict]:
        """COCO keypoint results: keypoints as [x, y, score] * K, as pycocotools expects."""
        results = []
        for p in range(self.num_persons):
            kpts = np.concatenate([self.keypoints[p], self.keypoint_scores[p][:, None]], axis=1)
            x0, y0, x1, y1 = self.boxes[p]
            results.append({
                "image_id": int(image_id),
                "category_id": int(category_id),
                "keypoints": [round(float(v), 3) for v in kpts.reshape(-1)],
                "bbox": [round(float(v), 3) for v in (x0, y0, x1 - x0, y1 - y0)],
                "score": float(self.scores[p]),
            })
        return results

    @classmethod
    def from_coco_results(cls, results: list[dict], num_keypoints: int) -> Poses:
        """Poses from COCO results of one image; a missing bbox becomes the keypoints' extent."""
        if not results:
            return cls.empty(num_keypoints)
        kpts = np.array([r["keypoints"] for r in results], dtype=np.float64)
        if kpts.shape[1] != 3 * num_keypoints:
            raise ValueError(
                f"a result has {kpts.shape[1]} keypoint numbers; expected {3 * num_keypoints} "
                f"(x, y, score for each of {num_keypoints} keypoints)"
            )
        kpts = kpts.reshape(len(results), num_keypoints, 3)
        boxes = []
        for r, k in zip(results, kpts):
            if "bbox" in r:
                x, y, w, h = r["bbox"]
                boxes.append([x, y, x + w, y + h])
            else:
                boxes.append([k[:, 0].min(), k[:, 1].min(), k[:, 0].max(), k[:, 1].max()])
        return cls(
            keypoints=kpts[..., :2].copy(),
            keypoint_scores=kpts[..., 2].copy(),
            visibility=np.full(kpts.shape[:2], 2, dtype=np.int64),
            boxes=np.asarray(boxes, dtype=np.float64),
            scores=np.array([float(r.get("score", 1.0)) for r in results]),
        )
