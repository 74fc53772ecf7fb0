"""Object keypoint similarity between persons and Hungarian matching of persons on it.

OKS as COCO defines it (pycocotools COCOeval.computeOks):
    OKS = mean over keypoints of exp(-d^2 / (2 * area * (2 * sigma)^2))
with `area` the person's area in pixels^2 (here the box area), `sigma` the schema's per-keypoint
sigmas and d the pixel distance between the two predictions of a keypoint.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from clickpose.poses import Poses

_EPS = np.spacing(1)  # pycocotools adds it to the area


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """(P, 4) xyxy -> (P,) areas in pixels^2 (empty boxes give 0)."""
    wh = np.clip(boxes[:, 2:4] - boxes[:, 0:2], 0, None)
    return wh[:, 0] * wh[:, 1]


def keypoint_similarities(sq_dist: np.ndarray, area, sigmas: np.ndarray) -> np.ndarray:
    """Each keypoint's OKS term: sq_dist (..., K) squared pixel distances, `area` pixels^2
    broadcastable to (..., 1), sigmas (K,) -> (..., K)."""
    variances = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    return np.exp(-sq_dist / variances / (np.asarray(area, dtype=np.float64) + _EPS) / 2)


def oks_matrix(
    keypoints_a: np.ndarray,       # (A, K, 2)
    keypoints_b: np.ndarray,       # (B, K, 2)
    area: np.ndarray,              # broadcastable to (A, B): the scale of each pair
    sigmas: np.ndarray,            # (K,)
    weights_a: np.ndarray | None = None,  # (A, K) keypoints of `a` that count (COCO: v > 0)
) -> np.ndarray:
    """(A, B) OKS of every person of `a` against every person of `b`."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if keypoints_a.shape[1] != len(sigmas) or keypoints_b.shape[1] != len(sigmas):
        raise ValueError(
            f"OKS: {keypoints_a.shape[1]} and {keypoints_b.shape[1]} keypoints for "
            f"{len(sigmas)} sigmas; the schema must match the predictions"
        )
    d2 = ((keypoints_a[:, None] - keypoints_b[None]) ** 2).sum(-1)          # (A, B, K)
    area = np.broadcast_to(np.asarray(area, dtype=np.float64),
                           (len(keypoints_a), len(keypoints_b)))[..., None]  # (A, B, 1)
    sim = keypoint_similarities(d2, area, sigmas)                            # (A, B, K)
    if weights_a is None:
        return sim.mean(-1)
    w = np.asarray(weights_a, dtype=np.float64)[:, None, :]                  # (A, 1, K)
    count = w.sum(-1)
    return np.where(count > 0, (sim * w).sum(-1) / np.maximum(count, 1e-12), 0.0)


def pair_oks(a: Poses, b: Poses, sigmas: np.ndarray) -> np.ndarray:
    """(A, B) symmetric OKS between two predictions: the scale is the mean of both box areas."""
    area = (box_areas(a.boxes)[:, None] + box_areas(b.boxes)[None]) / 2
    return oks_matrix(a.keypoints, b.keypoints, area, sigmas)


def match_persons(oks: np.ndarray, min_oks: float = 0.0) -> list[tuple[int, int]]:
    """One-to-one matching maximising the summed OKS (Hungarian); pairs below min_oks dropped."""
    if oks.size == 0:
        return []
    rows, cols = linear_sum_assignment(oks, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if oks[r, c] > min_oks]
