"""InteractiveSession.refine: the keypoint decoder re-run from given poses with nothing pinned,
on the cached encoder memory; and the error-consistency score built on it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from annotator_fixtures import tiny_model
from session_fixtures import structured_image

from clickpose.keypoints import coco17
from clickpose.poses import Poses
from selection import error_consistency
from selection.scores import session_error_consistency, training_pose_errors

H, W = 240, 320
K = 17


def _poses(boxes, scores, seed: int = 0) -> Poses:
    """Persons in xyxy pixel boxes with keypoints spread inside each box."""
    boxes = np.asarray(boxes, dtype=np.float64)
    layout = np.random.default_rng(seed).uniform(0.1, 0.9, size=(K, 2))
    keypoints = boxes[:, None, :2] + layout[None] * (boxes[:, None, 2:] - boxes[:, None, :2])
    return Poses(keypoints=keypoints, keypoint_scores=np.full((len(boxes), K), 0.9),
                 visibility=np.full((len(boxes), K), 2, dtype=np.int64), boxes=boxes,
                 scores=np.asarray(scores, dtype=np.float64))


GIVEN = _poses([[30, 30, 90, 210], [140, 35, 200, 205], [240, 30, 300, 220]], [0.9, 0.7, 0.4])


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_refine_shapes_and_given_scores(model):
    session = model.session(structured_image(), max_persons=4)
    refined = session.refine(GIVEN)
    assert refined.keypoints.shape == (3, K, 2) and refined.keypoint_scores.shape == (3, K)
    assert refined.visibility.shape == (3, K) and refined.boxes.shape == (3, 4)
    assert np.isfinite(refined.keypoints).all() and np.isfinite(refined.boxes).all()
    assert ((refined.keypoint_scores >= 0) & (refined.keypoint_scores <= 1)).all()
    np.testing.assert_array_equal(refined.scores, GIVEN.scores)
    # Inside the image: the decoder works in normalized coordinates.
    assert (refined.keypoints[..., 0] >= 0).all() and (refined.keypoints[..., 0] <= W).all()
    assert (refined.keypoints[..., 1] >= 0).all() and (refined.keypoints[..., 1] <= H).all()


def test_refine_reuses_the_cached_memory_and_leaves_the_session_alone(model, count_calls):
    backbone, encoder = count_calls(model.backbone), count_calls(model.encoder)
    humans, decoder = count_calls(model.human_decoder), count_calls(model.keypoint_decoder)
    session = model.session(structured_image(), max_persons=4)
    before = session.poses.copy()
    passes = model.config.keypoint_passes  # the first prediction's decodes
    assert (backbone[0], encoder[0], humans[0], decoder[0]) == (1, 1, 1, passes)
    for _ in range(3):
        session.refine(GIVEN)
    assert (backbone[0], encoder[0], humans[0]) == (1, 1, 1)
    assert decoder[0] == passes + 3
    assert not session.can_undo and session.num_persons == 4
    for field in ("keypoints", "keypoint_scores", "visibility", "boxes", "scores"):
        assert np.array_equal(getattr(session.poses, field), getattr(before, field)), field
    # No person of the session was clicked by a refine.
    assert all(session.clicks(p) == {} for p in range(session.num_persons))


def test_refine_equals_a_fresh_decode_of_the_samestructured_image(model):
    """The cached memory and projected values give what a full forward pass from the image
    gives: the decoder started from the given poses, as given persons, nothing pinned."""
    from clickpose.model.clickpose_model import boxes_xyxy_to_normalized
    from clickpose.model.inference import EvalTransform

    session = model.session(structured_image())
    refined = session.refine(GIVEN)
    images, mask, size = EvalTransform.from_config(model.config)(structured_image())
    scale = torch.tensor([W, H], dtype=torch.float32)
    with torch.no_grad():
        state = model.encode(images, mask)
        boxes = boxes_xyxy_to_normalized(GIVEN.boxes, size)
        start = (torch.as_tensor(GIVEN.keypoints, dtype=torch.float32) / scale).clamp(0, 1)
        out = model.decode_keypoints(state, model.humans_from_boxes(boxes[None]), start[None])
    expected = (out["pred_keypoints"][0] * scale).double().numpy()
    np.testing.assert_allclose(refined.keypoints, expected, atol=1e-3)


def test_refine_starts_from_the_given_poses_and_pins_nothing(model):
    session = model.session(structured_image())
    moved = _poses(GIVEN.boxes, GIVEN.scores, seed=1)   # same persons, other starting poses
    a, b = session.refine(GIVEN), session.refine(moved)
    assert np.abs(a.keypoints - b.keypoints).max() > 1e-3
    # Unpinned: no keypoint is copied from the input as a click would be.
    assert (np.linalg.norm(a.keypoints - GIVEN.keypoints, axis=-1) > 1e-6).all()


def test_refine_is_deterministic(model):
    session = model.session(structured_image())
    first = session.refine(GIVEN)
    again = session.refine(GIVEN)
    other_session = model.session(structured_image()).refine(GIVEN)
    np.testing.assert_array_equal(first.keypoints, again.keypoints)
    np.testing.assert_array_equal(first.keypoints, other_session.keypoints)


def test_refine_of_nobody_and_wrong_schemas(model, count_calls):
    session = model.session(structured_image())
    decoder = count_calls(model.keypoint_decoder)
    empty = session.refine(Poses.empty(K))
    assert empty.num_persons == 0 and empty.num_keypoints == K and decoder[0] == 0
    wrong = Poses(np.zeros((1, 5, 2)), np.ones((1, 5)), np.full((1, 5), 2), np.array([[0, 0, 9, 9.]]),
                  np.ones(1))
    with pytest.raises(ValueError, match=r"refine: poses have 5 keypoints .* 'coco17' has 17"):
        session.refine(wrong)


# ---- error consistency through a session -----------------------------------------------------
class KnownRefiner:
    """A session whose decoder is a known function: it moves every keypoint `strength` of the
    way back to the prediction (1 = a perfectly consistent model, 0 = one that repairs nothing)."""

    def __init__(self, poses: Poses, strength: float):
        self.schema, self.poses, self.strength, self.calls = coco17(), poses, strength, 0

    def refine(self, poses: Poses) -> Poses:
        self.calls += 1
        out = poses.copy()
        # The perturbation keeps the boxes: they say which predicted person each one is.
        same = [int(np.flatnonzero((self.poses.boxes == box).all(1))[0]) for box in poses.boxes]
        target = self.poses.keypoints[same]
        out.keypoints = poses.keypoints + self.strength * (target - poses.keypoints)
        return out


def test_session_score_orders_consistent_below_inconsistent_decoders():
    scores = {s: session_error_consistency(7, KnownRefiner(GIVEN, s), trials=3, seed=0).score
              for s in (1.0, 0.7, 0.3, 0.0)}
    assert scores[1.0] == pytest.approx(0.0, abs=1e-6)
    assert scores[1.0] < scores[0.7] < scores[0.3] < scores[0.0] <= 1.0
    # The wiring is the plain score with the training perturbation: same numbers.
    plain = error_consistency(7, GIVEN, KnownRefiner(GIVEN, 0.3).refine,
                              training_pose_errors(coco17()), coco17().sigmas_array,
                              trials=3, seed=0)
    assert plain.score == scores[0.3]


def test_session_score_counts_trials_and_skips_undetected_persons():
    refiner = KnownRefiner(GIVEN, 0.5)
    result = session_error_consistency("a.jpg", refiner, trials=4, min_person_score=0.5)
    assert refiner.calls == 4
    assert [p.index for p in result.persons] == [0, 1]   # the 0.4 person is below 0.5
    nobody = KnownRefiner(GIVEN, 0.5)
    empty = session_error_consistency("a.jpg", nobody, min_person_score=0.95)
    assert empty.score == 1.0 and nobody.calls == 0


def test_session_score_with_the_real_model(model, count_calls):
    backbone, decoder = count_calls(model.backbone), count_calls(model.keypoint_decoder)
    session = model.session(structured_image(), max_persons=3)
    a = session_error_consistency(3, session, trials=2, seed=5, min_person_score=0.0)
    b = session_error_consistency(3, session, trials=2, seed=5, min_person_score=0.0)
    c = session_error_consistency(3, session, trials=2, seed=6, min_person_score=0.0)
    passes = model.config.keypoint_passes  # the first prediction's decodes
    assert backbone[0] == 1 and decoder[0] == passes + 3 * 2
    assert 0.0 <= a.score <= 1.0 and len(a.persons) == 3
    assert a.score == b.score and a.score != c.score
    assert a.parts["perturbed_deviation"] > 0
