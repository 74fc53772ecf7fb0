"""Refuse predictions that would make a score meaningless (NaN, confidences outside [0, 1]).

A NaN confidence is a model or export bug; treating it as 0 or 1 would silently rank the image
first or last, so every scorer raises instead, naming the image and the field.
"""
from __future__ import annotations

import numpy as np

from clickpose.poses import Poses


class PredictionError(ValueError):
    """A prediction that cannot be scored; the message names the image, the field and the fix."""


_FIX = ("check the checkpoint and the input image, or leave the image out of the pool "
        "(score_pool(..., on_invalid='skip') records it and goes on)")


def _first_bad(mask: np.ndarray) -> str:
    where = np.argwhere(mask)[0]
    if len(where) == 1:
        return f"person {where[0]}"
    return f"person {where[0]}, " + ", ".join(f"index {int(i)}" for i in where[1:])


def check_poses(poses: Poses, image_id, where: str = "prediction") -> None:
    """Raise PredictionError when a field is not finite or a confidence is outside [0, 1]."""
    for field in ("keypoints", "keypoint_scores", "boxes", "scores"):
        values = np.asarray(getattr(poses, field), dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            raise PredictionError(
                f"image {image_id!r}: {where} field '{field}' has {int(bad.sum())} non-finite "
                f"value(s) (first at {_first_bad(bad)}); {_FIX}"
            )
    for field in ("keypoint_scores", "scores"):
        values = np.asarray(getattr(poses, field), dtype=np.float64)
        bad = (values < 0) | (values > 1)
        if bad.any():
            raise PredictionError(
                f"image {image_id!r}: {where} field '{field}' has value {values[bad][0]:.4g} "
                f"(first at {_first_bad(bad)}) outside [0, 1]; confidences must be "
                "probabilities (apply a sigmoid to logits)"
            )
    if poses.keypoint_scores.shape != poses.keypoints.shape[:2]:
        raise PredictionError(
            f"image {image_id!r}: {where} field 'keypoint_scores' has shape "
            f"{poses.keypoint_scores.shape}, expected {poses.keypoints.shape[:2]} "
            "(persons, keypoints)"
        )
