"""Least confidence from person scores and keypoint confidences.

For the persons with score s_p >= min_person_score (those an annotator would be shown):
    u_p   = 1 - mean_k c_pk                      (c_pk: keypoint confidence)
    score = sum_p s_p * u_p / sum_p s_p          (a surer person weighs more)
No person above the threshold: the image is either empty or everyone in it was missed, and
only a label tells which; it scores `empty_score` (default 1.0, the maximum).
"""
from __future__ import annotations

from clickpose.poses import Poses
from selection.checks import check_poses
from selection.results import ImageScore, PersonScore
from selection.scores.common import detected


def least_confidence(image_id, poses: Poses, min_person_score: float = 0.3,
                     empty_score: float = 1.0) -> ImageScore:
    check_poses(poses, image_id)
    keep = detected(poses, min_person_score)
    if len(keep) == 0:
        return ImageScore(
            image_id=image_id, method="least_confidence", score=empty_score,
            parts={"persons": 0.0},
            note=f"no person scored >= {min_person_score}: an empty image or everyone missed",
        )
    s = poses.scores[keep]                                    # (P,)
    mean_conf = poses.keypoint_scores[keep].mean(axis=1)     # (P,)
    u = 1.0 - mean_conf
    persons = [
        PersonScore(index=int(i), score=float(u_p),
                    parts={"person_score": float(s_p), "mean_keypoint_confidence": float(m)})
        for i, u_p, s_p, m in zip(keep, u, s, mean_conf)
    ]
    score = float((s * u).sum() / max(s.sum(), 1e-12))
    return ImageScore(image_id=image_id, method="least_confidence", score=score,
                      persons=persons, parts={"persons": float(len(keep))})
