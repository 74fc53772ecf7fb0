"""Expected clicks: the predicted human cost of labeling an image, for cost-aware selection.

With a `clicks_fn(poses) -> float` from the caller (the NoC simulation taking the model's own
pose as truth, or a learned estimate), that number is the image's cost. Without one, an estimate
from the confidences, reading each score as a probability:
  a shown person (s_p >= min_person_score):
      s_p * sum_k (1 - c_pk) + (1 - s_p) * false_positive_clicks
      (if real, each keypoint is wrong with probability 1 - c_pk and costs a click;
       if not, one click deletes it)
  a hidden candidate (min_candidate_score <= s_p < min_person_score):
      s_p * (missed_person_clicks + sum_k (1 - c_pk))
      (if real, the annotator draws its box, then fixes its keypoints)
  cost = sum over persons.  Defaults: 1 click to delete, 2 clicks to draw a box.
An image with no candidate costs 0 (one look confirms it is empty).
Score = cost: more predicted clicks = more that the model gets wrong = more to learn from; a
cost-aware strategy divides another score by this cost instead (select_batch 'top_per_click').
Per person: its expected clicks, so the annotator fixes the costliest first. The image also
keeps selection.click_features (persons, their score and keypoint deficits, their scale), from
which selection.click_calibration learns the clicks that labeling really takes.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from clickpose.poses import Poses
from selection.checks import PredictionError, check_poses
from selection.click_features import click_features
from selection.results import ImageScore, PersonScore

ClicksFn = Callable[[Poses], float]


def confidence_clicks(poses: Poses, min_person_score: float = 0.3,
                      min_candidate_score: float = 0.05, missed_person_clicks: float = 2.0,
                      false_positive_clicks: float = 1.0) -> tuple[float, list[PersonScore]]:
    """The estimate above: (total expected clicks, per-person expected clicks)."""
    s = poses.scores                                            # (P,)
    wrong = (1.0 - poses.keypoint_scores).sum(axis=1)           # (P,) expected wrong keypoints
    shown = s >= min_person_score
    hidden = (s >= min_candidate_score) & ~shown
    cost = np.zeros(len(s))
    cost[shown] = s[shown] * wrong[shown] + (1 - s[shown]) * false_positive_clicks
    cost[hidden] = s[hidden] * (missed_person_clicks + wrong[hidden])
    persons = [
        PersonScore(index=int(i), score=float(cost[i]),
                    parts={"person_score": float(s[i]), "expected_wrong_keypoints": float(wrong[i]),
                           "shown": float(shown[i])})
        for i in np.flatnonzero(shown | hidden)
    ]
    return float(cost.sum()), persons


def expected_clicks(image_id, poses: Poses, clicks_fn: ClicksFn | None = None,
                    min_person_score: float = 0.3, min_candidate_score: float = 0.05,
                    missed_person_clicks: float = 2.0,
                    false_positive_clicks: float = 1.0) -> ImageScore:
    check_poses(poses, image_id)
    estimate, persons = confidence_clicks(poses, min_person_score, min_candidate_score,
                                          missed_person_clicks, false_positive_clicks)
    parts = {"confidence_estimate": estimate, "persons": float(len(persons))}
    cost = estimate
    if clicks_fn is not None:
        cost = float(clicks_fn(poses))
        if not math.isfinite(cost) or cost < 0:
            raise PredictionError(
                f"image {image_id!r}: clicks_fn returned {cost}; it must return a finite number "
                "of clicks >= 0"
            )
    note = "no candidate person: predicted to need no clicks" if not persons else ""
    features = click_features(poses, estimate, min_person_score, min_candidate_score)
    return ImageScore(image_id=image_id, method="expected_clicks", score=cost, cost=cost,
                      cost_features=features, persons=persons, parts=parts, note=note)
