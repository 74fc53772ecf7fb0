"""Small pieces shared by the scores: who counts as detected, binary entropy."""
from __future__ import annotations

import numpy as np

from clickpose.poses import Poses


def detected(poses: Poses, min_person_score: float) -> np.ndarray:
    """Indices of the persons whose score reaches the detection threshold."""
    return np.flatnonzero(poses.scores >= min_person_score)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) in bits: 0 for p in {0, 1}, 1 for p = 0.5."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0)  # 0 * log 0 = 0


def reduce_scores(values: np.ndarray, how: str) -> float:
    if how == "mean":
        return float(values.mean())
    if how == "max":
        return float(values.max())
    if how == "sum":
        return float(values.sum())
    raise ValueError(f"reduce is '{how}'; use 'mean', 'max' or 'sum'")
