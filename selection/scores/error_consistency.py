"""Error-modeling consistency: a signal only a pose-refining decoder like Click-Pose gives.

Perturb the predicted poses with simulated errors (jitter, misses, swaps, inversions), let the
decoder refine them, and measure how far it lands from the original prediction. Where the model
is sure, it pulls a damaged pose back to the same answer; where it is unsure, it lands elsewhere.
    per person, per trial: 1 - OKS(refined, original)   (scale = mean box area of the two)
    person score = mean over trials;  image score = mean over persons
The refined persons are matched to the original ones by Hungarian matching on OKS (the decoder
may reorder, drop or add persons); an original person left unmatched counts 1 (the worst).
No person above the threshold: nothing to perturb, the image scores `empty_score` (default 1.0,
as for least confidence: an empty image or everyone missed).

refine_fn(poses_in) -> Poses and perturb_fn(poses, rng) -> Poses come from the caller: the model
side refines through `InteractiveSession.refine` (the keypoint decoder re-run from the given
poses, nothing pinned, on the image's cached encoder memory), and perturb_fn is the same error
simulation used in training (`training_pose_errors`); `session_error_consistency` wires both.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clickpose.poses import Poses
from selection.checks import check_poses
from selection.ids import stable_hash
from selection.oks import match_persons, pair_oks
from selection.results import ImageScore, PersonScore
from selection.scores.common import detected

RefineFn = Callable[[Poses], Poses]
PerturbFn = Callable[[Poses, np.random.Generator], Poses]


def _deviation(original: Poses, other: Poses, sigmas: np.ndarray) -> np.ndarray:
    """(P,) 1 - OKS of each original person to its counterpart in `other` (1 when none)."""
    oks = pair_oks(original, other, sigmas)                 # (P, Q)
    out = np.ones(original.num_persons)
    for p, q in match_persons(oks):
        out[p] = 1.0 - oks[p, q]
    return out


def error_consistency(image_id, poses: Poses, refine_fn: RefineFn, perturb_fn: PerturbFn,
                      sigmas, trials: int = 3, seed: int = 0, min_person_score: float = 0.3,
                      empty_score: float = 1.0) -> ImageScore:
    if trials < 1:
        raise ValueError(f"trials is {trials}; use at least 1")
    check_poses(poses, image_id)
    sigmas = np.asarray(sigmas, dtype=np.float64)
    keep = detected(poses, min_person_score)
    if len(keep) == 0:
        return ImageScore(
            image_id=image_id, method="error_consistency", score=empty_score,
            parts={"persons": 0.0},
            note=f"no person scored >= {min_person_score}: nothing to perturb",
        )
    original = poses.select(keep)
    rng = np.random.default_rng([seed, stable_hash(f"error_consistency:{image_id}")])
    after = np.zeros((trials, len(keep)))     # deviation of the refined pose
    before = np.zeros((trials, len(keep)))    # deviation of the perturbed input
    for t in range(trials):
        perturbed = perturb_fn(original.copy(), rng)
        check_poses(perturbed, image_id, where=f"perturbed poses (trial {t})")
        refined = refine_fn(perturbed)
        check_poses(refined, image_id, where=f"refined poses (trial {t})")
        before[t] = _deviation(original, perturbed, sigmas)
        after[t] = _deviation(original, refined, sigmas)
    person_scores = after.mean(0)
    persons = [
        PersonScore(index=int(i), score=float(s),
                    parts={"perturbed_deviation": float(b), "person_score": float(ps)})
        for i, s, b, ps in zip(keep, person_scores, before.mean(0), original.scores)
    ]
    return ImageScore(
        image_id=image_id, method="error_consistency", score=float(person_scores.mean()),
        persons=persons,
        parts={"persons": float(len(keep)), "trials": float(trials),
               "perturbed_deviation": float(before.mean())},
    )
