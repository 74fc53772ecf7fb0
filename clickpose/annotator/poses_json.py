"""Poses <-> plain JSON (lists), the form the task store and the web page use."""
from __future__ import annotations

import numpy as np

from clickpose.poses import Poses


def poses_to_json(poses: Poses, decimals: int = 2) -> dict:
    return {
        "keypoints": np.round(poses.keypoints, decimals).tolist(),       # (P, K, 2) pixels
        "keypoint_scores": np.round(poses.keypoint_scores, 4).tolist(),  # (P, K)
        "visibility": poses.visibility.astype(int).tolist(),             # (P, K) COCO v
        "boxes": np.round(poses.boxes, decimals).tolist(),               # (P, 4) xyxy pixels
        "scores": np.round(poses.scores, 4).tolist(),                    # (P,)
    }


def poses_from_json(data: dict, num_keypoints: int, where: str = "poses") -> Poses:
    """The inverse of poses_to_json; a wrong shape names `where` and the field."""
    try:
        scores = np.asarray(data["scores"], dtype=np.float64).reshape(-1)
        p = len(scores)
        return Poses(
            keypoints=np.asarray(data["keypoints"], dtype=np.float64).reshape(p, num_keypoints, 2),
            keypoint_scores=np.asarray(data["keypoint_scores"],
                                       dtype=np.float64).reshape(p, num_keypoints),
            visibility=np.asarray(data["visibility"], dtype=np.int64).reshape(p, num_keypoints),
            boxes=np.asarray(data["boxes"], dtype=np.float64).reshape(p, 4),
            scores=scores,
        )
    except KeyError as e:
        raise ValueError(f"{where}: field {e} is missing") from None
    except ValueError as e:
        raise ValueError(f"{where}: the arrays do not hold {num_keypoints} keypoints per "
                         f"person ({e})") from None


def order_worst_first(poses: Poses, person_scores: dict[int, float] | None = None) -> np.ndarray:
    """Person order for review: by selection's per-person score (higher = worse) when given,
    else by the model's confidence (lowest first)."""
    if person_scores:
        badness = np.array([person_scores.get(i, -np.inf) for i in range(poses.num_persons)])
    else:
        confidence = poses.scores * (poses.keypoint_scores.mean(axis=1)
                                     if poses.num_keypoints else 1.0)
        badness = -confidence
    return np.argsort(-badness, kind="stable")
