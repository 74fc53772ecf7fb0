"""Entropy of the model's binary decisions: is this a person, is this keypoint right.

With H the binary entropy in bits, for each person with score s_p >= min_person_score:
    e_p   = 0.5 * H(s_p) + 0.5 * mean_k H(c_pk)
    score = reduce_p e_p                          (mean by default; max or sum on request)
The threshold is lower than for least confidence because a person near 0.5 is itself a doubt
worth counting. No person above it: `empty_score` (default 1.0, one full bit).
"""
from __future__ import annotations

from clickpose.poses import Poses
from selection.checks import check_poses
from selection.results import ImageScore, PersonScore
from selection.scores.common import binary_entropy, detected, reduce_scores


def entropy(image_id, poses: Poses, min_person_score: float = 0.1, reduce: str = "mean",
            empty_score: float = 1.0) -> ImageScore:
    check_poses(poses, image_id)
    keep = detected(poses, min_person_score)
    if len(keep) == 0:
        return ImageScore(
            image_id=image_id, method="entropy", score=empty_score, parts={"persons": 0.0},
            note=f"no person scored >= {min_person_score}: an empty image or everyone missed",
        )
    h_person = binary_entropy(poses.scores[keep])                        # (P,)
    h_keypoints = binary_entropy(poses.keypoint_scores[keep]).mean(1)    # (P,)
    e = 0.5 * h_person + 0.5 * h_keypoints
    persons = [
        PersonScore(index=int(i), score=float(e_p),
                    parts={"person_entropy": float(hp), "keypoint_entropy": float(hk)})
        for i, e_p, hp, hk in zip(keep, e, h_person, h_keypoints)
    ]
    return ImageScore(image_id=image_id, method="entropy", score=reduce_scores(e, reduce),
                      persons=persons, parts={"persons": float(len(keep))})
