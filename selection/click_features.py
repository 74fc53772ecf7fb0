"""What a prediction says about the clicks its image will take, as named numbers.

The confidence estimate (selection.scores.expected_clicks) reads a model's confidences as
probabilities; the clicks an image really takes follow how many persons it holds and how
poorly they are posed. selection.click_calibration fits their weights on the clicks a
campaign's labeled images took; every feature grows with the work an image holds, so no
weight is negative. In the active-learning bench's mixed-pool campaign (docs/measurements.md)
that fit ranked the labeled images by their clicks with Spearman 0.63-0.76, where the
confidence estimate alone gave 0.11-0.59.
"""
from __future__ import annotations

import numpy as np

from clickpose.poses import Poses
from selection.oks import box_areas

FEATURES = ("confidence_estimate", "shown_persons", "candidate_persons", "score_deficit",
            "keypoint_deficit", "inverse_scale")
# A person's scale, in pixels, at which inverse_scale counts it as 1: smaller persons take
# more clicks (each keypoint's OKS tolerance shrinks with the person).
REFERENCE_SCALE_PX = 100.0


def click_features(poses: Poses, confidence_estimate: float, min_person_score: float = 0.3,
                   min_candidate_score: float = 0.05) -> dict[str, float]:
    """FEATURES of one image's prediction; `confidence_estimate` is the confidence-based
    expected clicks of the same prediction."""
    s = poses.scores
    shown = s >= min_person_score
    scale = np.sqrt(np.clip(box_areas(poses.boxes), 1.0, None))
    return {
        "confidence_estimate": float(confidence_estimate),
        "shown_persons": float(shown.sum()),
        "candidate_persons": float((s >= min_candidate_score).sum()),
        "score_deficit": float((1.0 - s[shown]).sum()),
        "keypoint_deficit": float((1.0 - poses.keypoint_scores[shown]).sum()),
        "inverse_scale": float((REFERENCE_SCALE_PX / scale[shown]).sum()),
    }
