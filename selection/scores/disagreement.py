"""Disagreement between several stochastic passes (dropout, query noise) on one image.

Persons are matched across passes by Hungarian matching on OKS (schema sigmas, scale = mean box
area of the pair); a pair below `min_match_oks` is two different persons.
    similarity(a, b) = sum of matched OKS / (|a| + |b| - matches)   (1 when both passes are empty)
    score            = 1 - mean over pass pairs of similarity(a, b)
so a person that one pass finds and another does not adds 0 to the numerator and 1 to the
denominator: missing persons count as disagreement. 0 for identical passes.

Per person (the persons of passes[0], the pass the annotator is shown): 1 - the mean OKS to its
match in each other pass (0 when unmatched), the share of other passes that found it, and the
keypoint spread: per keypoint, the RMS distance of the matched positions to their mean, averaged
over keypoints and divided by the person scale sqrt(box area).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

from clickpose.poses import Poses
from selection.checks import check_poses
from selection.oks import box_areas, match_persons, pair_oks
from selection.results import ImageScore, PersonScore
from selection.scores.common import detected


def _similarity(oks: np.ndarray, matches: list[tuple[int, int]]) -> float:
    """Matched OKS over the union of persons of two passes; oks is (A, B)."""
    union = oks.shape[0] + oks.shape[1] - len(matches)
    if union == 0:
        return 1.0  # both passes see nobody: they agree
    return float(sum(oks[i, j] for i, j in matches) / union)


def _keypoint_spread(positions: list[np.ndarray], scale: float) -> float:
    """positions: M arrays (K, 2) of one person -> mean over keypoints of RMS spread / scale."""
    stack = np.stack(positions)                                          # (M, K, 2)
    rms = np.sqrt(((stack - stack.mean(0)) ** 2).sum(-1).mean(0))       # (K,)
    return float(rms.mean() / max(scale, 1e-6))


def disagreement(image_id, passes: list[Poses], sigmas, min_person_score: float = 0.3,
                 min_match_oks: float = 0.1) -> ImageScore:
    if len(passes) < 2:
        raise ValueError(
            f"image {image_id!r}: disagreement needs at least 2 passes, got {len(passes)}; "
            "run the model several times with dropout or query noise on"
        )
    sigmas = np.asarray(sigmas, dtype=np.float64)
    kept = []
    for n, poses in enumerate(passes):
        check_poses(poses, image_id, where=f"pass {n}")
        kept.append(detected(poses, min_person_score))
    views = [p.select(k) for p, k in zip(passes, kept)]

    oks, matches = {}, {}
    for a, b in combinations(range(len(views)), 2):
        oks[a, b] = pair_oks(views[a], views[b], sigmas)                 # (A, B)
        matches[a, b] = match_persons(oks[a, b], min_match_oks)
    pair_sims = [_similarity(oks[ab], matches[ab]) for ab in oks]
    score = 1.0 - float(np.mean(pair_sims))

    ref = views[0]
    scale = np.sqrt(box_areas(ref.boxes))                                 # (P,)
    oks_sum = np.zeros(ref.num_persons)
    found = np.zeros(ref.num_persons)
    positions = [[ref.keypoints[p]] for p in range(ref.num_persons)]
    unmatched_elsewhere = 0
    for b, other in enumerate(views[1:], start=1):
        unmatched_elsewhere += other.num_persons - len(matches[0, b])
        for p, q in matches[0, b]:
            oks_sum[p] += oks[0, b][p, q]
            found[p] += 1
            positions[p].append(other.keypoints[q])
    others = len(views) - 1
    persons = []
    spreads = []
    for p in range(ref.num_persons):
        parts = {"mean_oks": float(oks_sum[p] / others), "found_in": float(found[p] / others)}
        if len(positions[p]) >= 2:
            parts["keypoint_spread"] = _keypoint_spread(positions[p], scale[p])
            spreads.append(parts["keypoint_spread"])
        persons.append(PersonScore(index=int(kept[0][p]), score=1.0 - parts["mean_oks"],
                                   parts=parts))
    parts = {
        "passes": float(len(views)),
        "mean_pairwise_oks": float(np.mean(pair_sims)),
        "keypoint_spread": float(np.mean(spreads)) if spreads else 0.0,
        "mean_persons_per_pass": float(np.mean([v.num_persons for v in views])),
        "persons_unmatched_in_other_passes": float(unmatched_elsewhere),
    }
    note = "no pass found a person: the passes agree" if all(
        v.num_persons == 0 for v in views) else ""
    return ImageScore(image_id=image_id, method="disagreement", score=score, persons=persons,
                      parts=parts, note=note)
