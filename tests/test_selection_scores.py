"""Per-image scores on hand-made predictions whose order is known."""
from __future__ import annotations

import json

import numpy as np
import pytest

from clickpose.keypoints import coco17
from clickpose.poses import Poses
from selection import (
    PredictionError,
    disagreement,
    entropy,
    error_consistency,
    expected_clicks,
    least_confidence,
    random_score,
)
from selection.click_features import FEATURES, click_features
from selection.oks import box_areas, oks_matrix, pair_oks
from selection.results import ImageScore

SIGMAS = coco17().sigmas_array
K = 17
# A fixed 17-point figure in a unit square; a person is this figure scaled into its box.
TEMPLATE = np.random.default_rng(0).uniform(0.1, 0.9, size=(K, 2))


def person_poses(boxes, scores, keypoint_conf) -> Poses:
    """Persons in the given xyxy boxes; keypoint_conf: one number or a (K,) row per person."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    kpts = boxes[:, None, :2] + TEMPLATE[None] * (boxes[:, None, 2:] - boxes[:, None, :2])
    conf = np.asarray(keypoint_conf, dtype=np.float64)
    conf = np.broadcast_to(conf if conf.ndim == 2 else conf.reshape(-1)[:K], (len(boxes), K)).copy()
    return Poses(keypoints=kpts, keypoint_scores=conf,
                 visibility=np.full((len(boxes), K), 2, dtype=np.int64),
                 boxes=boxes, scores=np.asarray(scores, dtype=np.float64))


def shifted(poses: Poses, dx: float, person: int | None = None) -> Poses:
    out = poses.copy()
    sel = slice(None) if person is None else person
    out.keypoints[sel, :, 0] += dx
    return out


TWO = [[0, 0, 100, 200], [200, 0, 300, 200]]


# ---- OKS ------------------------------------------------------------------------------
def test_oks_matches_pycocotools():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = person_poses([[10, 20, 110, 220]], [1.0], 1.0)
    dt = person_poses([[10, 20, 110, 220]], [0.9], 0.8)
    dt.keypoints += np.random.default_rng(1).normal(0, 6, size=dt.keypoints.shape)
    dt.keypoints = np.round(dt.keypoints, 3)  # COCO results carry 3 decimals
    gt.keypoints = np.round(gt.keypoints, 3)
    vis = np.full(K, 2)
    vis[[3, 4]] = 0  # unlabeled keypoints do not count
    area = 9000.0
    coco_gt = COCO()
    coco_gt.dataset = {
        "images": [{"id": 1, "width": 400, "height": 400}],
        "categories": [coco17().to_coco_category()],
        "annotations": [{
            "id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": area,
            "bbox": [10, 20, 100, 200], "num_keypoints": int((vis > 0).sum()),
            "keypoints": np.concatenate([gt.keypoints[0], vis[:, None]], 1).reshape(-1).tolist(),
        }],
    }
    coco_gt.createIndex()
    coco_dt = coco_gt.loadRes(dt.to_coco_results(image_id=1))
    ev = COCOeval(coco_gt, coco_dt, "keypoints")
    ev.params.kpt_oks_sigmas = SIGMAS
    ev.params.imgIds = [1]
    ev._prepare()
    expected = ev.computeOks(1, 1)  # (D, G)
    ours = oks_matrix(gt.keypoints, dt.keypoints, area, SIGMAS, weights_a=(vis > 0)[None])
    assert ours.shape == (1, 1)
    assert 0.3 < ours[0, 0] < 0.99
    np.testing.assert_allclose(ours.T, expected, rtol=1e-6)


def test_pair_oks_is_one_for_identical_and_falls_with_distance():
    p = person_poses(TWO, [0.9, 0.9], 0.9)
    oks = pair_oks(p, p, SIGMAS)
    np.testing.assert_allclose(np.diag(oks), 1.0)
    assert oks[0, 1] < 0.01  # two persons 200 px apart are different persons
    assert pair_oks(p, shifted(p, 5), SIGMAS)[0, 0] > pair_oks(p, shifted(p, 15), SIGMAS)[0, 0]
    np.testing.assert_allclose(box_areas(p.boxes), [20000, 20000])


# ---- least confidence -------------------------------------------------------------------
def test_least_confidence_ranks_unconfident_image_above_confident():
    sure = least_confidence("sure", person_poses(TWO, [0.95, 0.9], 0.9))
    unsure = least_confidence("unsure", person_poses(TWO, [0.95, 0.9], 0.4))
    assert sure.score == pytest.approx(0.1)
    assert unsure.score == pytest.approx(0.6)
    assert unsure.score > sure.score


def test_least_confidence_weighs_by_person_score_and_ignores_persons_below_threshold():
    conf = np.stack([np.full(K, 0.9), np.full(K, 0.5), np.full(K, 0.0)])
    poses = person_poses(TWO + [[0, 300, 50, 400]], [0.8, 0.4, 0.1], conf)
    result = least_confidence(7, poses, min_person_score=0.3)
    assert result.score == pytest.approx((0.8 * 0.1 + 0.4 * 0.5) / 1.2)
    assert [p.index for p in result.persons] == [0, 1]     # person 2 (0.1) is not shown
    assert [p.index for p in result.persons_worst_first()] == [1, 0]


def test_least_confidence_without_detections_is_maximal_and_says_why():
    nobody = least_confidence(3, person_poses(TWO, [0.2, 0.1], 0.9))
    empty = least_confidence(4, Poses.empty(K))
    worst_seen = least_confidence(5, person_poses(TWO, [0.9, 0.9], 0.0))
    assert nobody.score == empty.score == 1.0
    assert worst_seen.score == pytest.approx(1.0)
    assert "no person scored >= 0.3" in nobody.note
    assert nobody.persons == []
    assert least_confidence(3, Poses.empty(K), empty_score=0.0).score == 0.0


# ---- entropy ----------------------------------------------------------------------------
def test_entropy_is_highest_near_one_half():
    sure = entropy("a", person_poses(TWO, [0.99, 0.99], 0.99))
    half = entropy("b", person_poses(TWO, [0.5, 0.5], 0.5))
    mid = entropy("c", person_poses(TWO, [0.9, 0.9], 0.7))
    assert half.score == pytest.approx(1.0)
    assert sure.score < mid.score < half.score
    def h(p):
        return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))

    assert mid.score == pytest.approx(0.5 * h(0.9) + 0.5 * h(0.7))


def test_entropy_of_exact_zero_and_one_is_zero_not_nan():
    conf = np.where(np.arange(K) % 2 == 0, 1.0, 0.0)
    result = entropy(1, person_poses([[0, 0, 10, 10]], [1.0], conf))
    assert result.score == 0.0


def test_entropy_reduce_options_and_per_person_order():
    poses = person_poses(TWO, [0.99, 0.6], np.stack([np.full(K, 0.99), np.full(K, 0.5)]))
    mean = entropy(1, poses)
    worst = entropy(1, poses, reduce="max")
    total = entropy(1, poses, reduce="sum")
    assert mean.score < worst.score < total.score
    assert total.score == pytest.approx(2 * mean.score)
    assert mean.persons_worst_first()[0].index == 1
    with pytest.raises(ValueError, match="reduce is 'median'"):
        entropy(1, poses, reduce="median")


# ---- disagreement -----------------------------------------------------------------------
def test_disagreement_is_zero_for_identical_passes():
    p = person_poses(TWO, [0.9, 0.8], 0.8)
    result = disagreement(1, [p, p.copy(), p.copy()], SIGMAS)
    assert result.score == pytest.approx(0.0, abs=1e-12)
    assert result.parts["keypoint_spread"] == pytest.approx(0.0)
    assert all(ps.parts["found_in"] == 1.0 for ps in result.persons)


def test_disagreement_grows_with_keypoint_spread():
    p = person_poses(TWO, [0.9, 0.8], 0.8)
    small = disagreement(1, [p, shifted(p, 3), shifted(p, -3)], SIGMAS)
    large = disagreement(1, [p, shifted(p, 12), shifted(p, -12)], SIGMAS)
    assert 0 < small.score < large.score < 1
    assert 0 < small.parts["keypoint_spread"] < large.parts["keypoint_spread"]
    # spread normalised by sqrt(box area): 3 px shifts at 0, +3, -3 -> RMS sqrt(6) px
    assert small.persons[0].parts["keypoint_spread"] == pytest.approx(np.sqrt(6) / np.sqrt(20000))


def test_disagreement_points_at_the_person_that_moves():
    p = person_poses(TWO, [0.9, 0.8], 0.8)
    result = disagreement(1, [p, shifted(p, 15, person=1), shifted(p, -15, person=1)], SIGMAS)
    worst = result.persons_worst_first()
    assert worst[0].index == 1 and worst[0].score > 0.1
    assert worst[1].score == pytest.approx(0.0, abs=1e-12)


def test_disagreement_counts_a_person_missing_from_a_pass():
    p = person_poses(TWO, [0.9, 0.8], 0.8)
    one = p.select([0])
    result = disagreement(1, [p, one], SIGMAS)
    # one matched pair with OKS 1, union of 2 persons
    assert result.score == pytest.approx(0.5)
    assert result.persons[1].parts["found_in"] == 0.0
    assert result.persons[1].score == 1.0
    # a person only in the other pass counts the same way
    assert disagreement(1, [one, p], SIGMAS).score == pytest.approx(0.5)
    assert disagreement(1, [one, p], SIGMAS).parts["persons_unmatched_in_other_passes"] == 1.0
    # below the detection threshold a person is not found
    faint = p.copy()
    faint.scores[1] = 0.05
    assert disagreement(1, [p, faint], SIGMAS).score == pytest.approx(0.5)


def test_disagreement_of_passes_that_all_see_nobody_is_zero():
    result = disagreement(1, [Poses.empty(K), Poses.empty(K)], SIGMAS)
    assert result.score == 0.0 and "agree" in result.note


def test_disagreement_needs_two_passes():
    with pytest.raises(ValueError, match="image 9: disagreement needs at least 2 passes"):
        disagreement(9, [Poses.empty(K)], SIGMAS)


# ---- error-modeling consistency ----------------------------------------------------------
def jitter(poses: Poses, rng: np.random.Generator) -> Poses:
    """Stand-in error simulation: moves every keypoint by up to 10 px."""
    out = poses.copy()
    out.keypoints += rng.uniform(-10, 10, size=out.keypoints.shape)
    return out


def pull_back(original: Poses, strength: float):
    """A decoder that moves each keypoint `strength` of the way back to `original`."""
    def refine(poses_in: Poses) -> Poses:
        out = poses_in.copy()
        out.keypoints = poses_in.keypoints + strength * (original.keypoints - poses_in.keypoints)
        return out
    return refine


def test_error_consistency_orders_stable_decoder_below_unstable():
    p = person_poses(TWO, [0.9, 0.8], 0.8)
    runs = {s: error_consistency(1, p, pull_back(p, s), jitter, SIGMAS, trials=3, seed=0)
            for s in (1.0, 0.8, 0.0)}
    assert runs[1.0].score == pytest.approx(0.0, abs=1e-12)
    assert 0 < runs[0.8].score < runs[0.0].score
    # a decoder that does nothing lands where the perturbation put it
    assert runs[0.0].score == pytest.approx(runs[0.0].parts["perturbed_deviation"])


def test_error_consistency_is_deterministic_per_seed_and_image():
    p = person_poses(TWO, [0.9, 0.8], 0.8)
    refine = pull_back(p, 0.5)
    a = error_consistency(5, p, refine, jitter, SIGMAS, seed=1)
    b = error_consistency(5, p, refine, jitter, SIGMAS, seed=1)
    c = error_consistency(5, p, refine, jitter, SIGMAS, seed=2)
    other_image = error_consistency(6, p, refine, jitter, SIGMAS, seed=1)
    assert a.score == b.score
    assert a.score != c.score
    assert a.score != other_image.score


def test_error_consistency_counts_a_person_the_decoder_drops():
    p = person_poses(TWO, [0.9, 0.8], 0.8)
    result = error_consistency(1, p, lambda q: p.select([0]), jitter, SIGMAS, trials=2)
    assert result.persons[0].score == pytest.approx(0.0, abs=1e-12)
    assert result.persons[1].score == 1.0
    assert result.score == pytest.approx(0.5)


def test_error_consistency_refuses_nan_from_the_decoder():
    p = person_poses(TWO, [0.9, 0.8], 0.8)

    def broken(q: Poses) -> Poses:
        out = q.copy()
        out.keypoints[0, 3, 1] = np.nan
        return out

    with pytest.raises(PredictionError, match=r"image 'img-3': refined poses \(trial 0\) "
                                              r"field 'keypoints'"):
        error_consistency("img-3", p, broken, jitter, SIGMAS)


def test_error_consistency_without_persons_does_not_call_the_model():
    def fail(*_):
        raise AssertionError("no person: nothing to refine")
    result = error_consistency(1, Poses.empty(K), fail, fail, SIGMAS)
    assert result.score == 1.0 and "nothing to perturb" in result.note


# ---- expected clicks ---------------------------------------------------------------------
def test_expected_clicks_counts_wrong_keypoints_and_person_actions():
    conf = np.stack([np.full(K, 0.9), np.full(K, 0.5), np.full(K, 0.5)])
    poses = person_poses(TWO + [[0, 300, 50, 400]], [1.0, 0.5, 0.2], conf)
    result = expected_clicks(1, poses)
    sure = 1.0 * K * 0.1                         # 1.7 wrong keypoints, certainly a person
    maybe_fp = 0.5 * K * 0.5 + 0.5 * 1.0         # shown; a delete if it is no person
    maybe_missed = 0.2 * (2.0 + K * 0.5)         # hidden; a box and its keypoints if real
    assert result.score == result.cost == pytest.approx(sure + maybe_fp + maybe_missed)
    assert [p.index for p in result.persons_worst_first()] == [1, 2, 0]


def test_click_features_count_persons_their_deficits_and_their_scale():
    conf = np.stack([np.full(K, 0.9), np.full(K, 0.5), np.full(K, 0.5)])
    # Boxes 100 x 200, 100 x 200 and 50 x 100 px; the third person is only a candidate.
    poses = person_poses(TWO + [[0, 300, 50, 400]], [1.0, 0.5, 0.2], conf)
    result = expected_clicks(1, poses)
    features = result.cost_features
    assert set(features) == set(FEATURES)
    assert features["confidence_estimate"] == result.parts["confidence_estimate"]
    assert features["shown_persons"] == 2.0 and features["candidate_persons"] == 3.0
    assert features["score_deficit"] == pytest.approx(0.0 + 0.5)
    assert features["keypoint_deficit"] == pytest.approx(K * 0.1 + K * 0.5)
    assert features["inverse_scale"] == pytest.approx(2 * 100 / np.sqrt(100 * 200))
    empty = click_features(Poses.empty(K), 0.0)
    assert all(value == 0.0 for value in empty.values())


def test_expected_clicks_orders_confident_below_unconfident_and_empty_is_free():
    sure = expected_clicks(1, person_poses(TWO, [0.99, 0.99], 0.95))
    unsure = expected_clicks(2, person_poses(TWO, [0.99, 0.99], 0.5))
    empty = expected_clicks(3, Poses.empty(K))
    assert empty.score == 0.0 < sure.score < unsure.score
    assert "no candidate" in empty.note


def test_expected_clicks_uses_the_callers_clicks_fn():
    poses = person_poses(TWO, [0.99, 0.99], 0.5)
    result = expected_clicks(1, poses, clicks_fn=lambda p: 3.0 * p.num_persons)
    assert result.cost == result.score == 6.0
    assert result.parts["confidence_estimate"] == pytest.approx(2 * (0.99 * K * 0.5 + 0.01))
    with pytest.raises(PredictionError, match="image 1: clicks_fn returned nan"):
        expected_clicks(1, poses, clicks_fn=lambda p: float("nan"))


# ---- random and invalid predictions ------------------------------------------------------
def test_random_score_is_fixed_by_seed_and_id():
    assert random_score(4, seed=0).score == random_score(4, seed=0).score
    assert random_score(4, seed=0).score != random_score(4, seed=1).score
    values = [random_score(i).score for i in range(2000)]
    assert 0 <= min(values) and max(values) < 1
    assert abs(np.mean(values) - 0.5) < 0.03


@pytest.mark.parametrize("scorer", [
    lambda i, p: least_confidence(i, p), lambda i, p: entropy(i, p),
    lambda i, p: expected_clicks(i, p), lambda i, p: disagreement(i, [p, p], SIGMAS),
])
def test_nan_confidence_is_a_clear_error_naming_image_and_field(scorer):
    p = person_poses(TWO, [0.9, 0.8], 0.8)
    p.keypoint_scores[1, 4] = np.nan
    with pytest.raises(PredictionError, match=r"image 42: .*'keypoint_scores' has 1 non-finite "
                                              r"value\(s\) \(first at person 1, index 4\)"):
        scorer(42, p)


def test_nan_person_score_and_out_of_range_confidence_are_errors():
    p = person_poses(TWO, [0.9, np.nan], 0.8)
    with pytest.raises(PredictionError, match="image 'x': prediction field 'scores'"):
        least_confidence("x", p)
    q = person_poses(TWO, [0.9, 0.8], 0.8)
    q.keypoint_scores[0, 0] = 2.5
    with pytest.raises(PredictionError, match="outside \\[0, 1\\].*sigmoid"):
        entropy("x", q)


def test_image_score_round_trips_through_json():
    result = disagreement("a/b.jpg", [person_poses(TWO, [0.9, 0.8], 0.8)] * 2, SIGMAS)
    again = ImageScore.model_validate(json.loads(result.model_dump_json()))
    assert again == result
    assert again.image_id == "a/b.jpg"
    assert ImageScore.model_validate_json(random_score(12).model_dump_json()).image_id == 12


def test_error_consistency_with_the_training_error_simulation():
    from selection import training_pose_errors

    p = person_poses(TWO, [0.9, 0.8], 0.8)
    perturb = training_pose_errors(coco17())
    noised = perturb(p.copy(), np.random.default_rng(0))
    moved = np.linalg.norm(noised.keypoints - p.keypoints, axis=-1)   # (P, K)
    assert (moved > 0.5).sum() >= 4                                  # errors were made
    assert (moved < 1e-4).any(axis=1).all()                           # >= 1 pinned per person
    np.testing.assert_array_equal(noised.boxes, p.boxes)
    exact = error_consistency(1, p, pull_back(p, 1.0), perturb, SIGMAS, trials=2)
    lazy = error_consistency(1, p, pull_back(p, 0.0), perturb, SIGMAS, trials=2)
    again = error_consistency(1, p, pull_back(p, 0.0), perturb, SIGMAS, trials=2)
    assert exact.score == pytest.approx(0.0, abs=1e-6)
    assert lazy.score > 0.05 and lazy.score == again.score


def test_error_consistency_follows_persons_the_decoder_reorders():
    p = person_poses(TWO, [0.9, 0.8], 0.8)
    result = error_consistency(1, p, lambda q: p.select([1, 0]), jitter, SIGMAS, trials=2)
    assert result.score == pytest.approx(0.0, abs=1e-12)
