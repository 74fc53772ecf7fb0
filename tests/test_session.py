"""The interactive session: backbone and encoder once per image, clicks pinned exactly,
undo, persons added / removed / confirmed, another detector's poses as the start."""
from __future__ import annotations

import numpy as np
import pytest
from annotator_fixtures import tiny_model
from session_fixtures import structured_image

from clickpose.poses import Poses


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def assert_same_poses(a: Poses, b: Poses) -> None:
    for field in ("keypoints", "keypoint_scores", "visibility", "boxes", "scores"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_session_runs_backbone_and_encoder_once(model, count_calls):
    backbone_calls = count_calls(model.backbone)
    encoder_calls = count_calls(model.encoder)
    human_calls = count_calls(model.human_decoder)
    decoder_calls = count_calls(model.keypoint_decoder)
    session = model.session(structured_image(), max_persons=5, proposal_passes=1)
    passes = model.config.keypoint_passes  # the first prediction's decodes
    assert (backbone_calls[0], encoder_calls[0], human_calls[0], decoder_calls[0]) == (
        1, 1, 1, passes)
    session.click(0, "left_wrist", 100.0, 120.0)
    session.click(1, 5, 180.0, 80.0)
    session.add_person([10, 10, 60, 200])
    session.undo()
    session.click(2, 0, 260.0, 50.0, visible=1)
    assert backbone_calls[0] == 1 and encoder_calls[0] == 1 and human_calls[0] == 1
    assert decoder_calls[0] == passes + 4  # one keypoint decode per click / added person


def test_clicked_keypoints_stay_exactly_where_clicked(model):
    session = model.session(structured_image(), max_persons=5)
    assert session.num_persons == 5
    before = session.poses.copy()
    clicks = [(0, 9, 101.25, 133.75, 2), (0, 3, 77.123456789, 61.5, 1), (3, 16, 250.0, 199.5, 2),
              (1, 0, 12.3456, 7.891, 2)]
    for person, k, x, y, v in clicks:
        poses = session.click(person, k, x, y, visible=v)
        assert poses is session.poses
    for person, k, x, y, v in clicks:
        assert poses.keypoints[person, k, 0] == x and poses.keypoints[person, k, 1] == y
        assert poses.visibility[person, k] == v
        assert poses.keypoint_scores[person, k] == 1.0
    # The decoder refined the other keypoints of the clicked persons.
    assert not np.allclose(poses.keypoints[0, [1, 2, 5, 6]], before.keypoints[0, [1, 2, 5, 6]])
    # A later click elsewhere does not move earlier clicks; clicking again does.
    poses = session.click(2, 11, 200.0, 150.0)
    assert tuple(poses.keypoints[0, 9]) == (101.25, 133.75)
    poses = session.click(0, 9, 90.5, 140.0)
    assert tuple(poses.keypoints[0, 9]) == (90.5, 140.0)
    assert session.clicks(0)[9] == (90.5, 140.0, 2)
    assert poses.num_persons == 5 and poses.boxes.shape == (5, 4)


def test_poses_depend_on_the_clicks_not_on_their_history(model):
    session = model.session(structured_image(), max_persons=4)
    session.click(0, 5, 60.0, 70.0)
    a = session.click(1, 6, 170.0, 75.0).copy()
    session.undo()
    session.undo()
    session.click(1, 6, 170.0, 75.0)
    b = session.click(0, 5, 60.0, 70.0)
    assert_same_poses(a, b)


def test_click_many_is_one_decode_and_one_undo(model, count_calls):
    session = model.session(structured_image(), max_persons=4)
    opened = session.poses.copy()
    decoder_calls = count_calls(model.keypoint_decoder)
    clicks = [(0, 5, 60.0, 70.0, 2), (1, "right_shoulder", 170.0, 75.0, 1)]
    together = session.click_many(clicks).copy()
    assert decoder_calls[0] == 1
    assert tuple(together.keypoints[1, 6]) == (170.0, 75.0) and together.visibility[1, 6] == 1
    # The same clicks one by one end in the same poses (the clicks decide, not their history).
    assert_same_poses(session.undo(), opened)
    assert not session.can_undo
    session.click(*clicks[0])
    assert_same_poses(session.click(*clicks[1]), together)
    # A bad click refuses the whole batch; no clicks is no action.
    with pytest.raises(IndexError, match="person 9 does not exist"):
        session.click_many([(2, 0, 5.0, 5.0, 2), (9, 0, 5.0, 5.0, 2)])
    assert 0 not in session.clicks(2)
    undo_depth = len(session._history)
    assert_same_poses(session.click_many([]), together)
    assert len(session._history) == undo_depth


def test_undo_restores_the_previous_poses_exactly(model):
    session = model.session(structured_image(), max_persons=5)
    history = [session.poses.copy()]
    history.append(session.click(0, 1, 50.0, 60.0).copy())
    history.append(session.add_person([200, 20, 300, 230]).copy())
    history.append(session.set_visibility(5, "nose", 1).copy())
    history.append(session.confirm_person(2).copy())
    history.append(session.remove_person(3).copy())
    history.append(session.click(4, 7, 240.0, 100.0).copy())
    assert session.num_persons == 5
    for expected in reversed(history[:-1]):
        assert_same_poses(session.undo(), expected)
    assert not session.can_undo
    assert_same_poses(session.undo(), history[0])  # nothing left: unchanged


def test_add_remove_confirm_and_visibility(model):
    session = model.session(structured_image(), max_persons=3)
    poses = session.add_person([150, 30, 190, 210])
    assert poses.num_persons == 4
    x0, y0, x1, y1 = poses.boxes[3]
    assert abs((x0 + x1) / 2 - 170) < 40 and abs((y0 + y1) / 2 - 120) < 60
    assert poses.scores[3] == 1.0  # drawn by the annotator
    # The model proposes keypoints for the new person, spread inside the image.
    assert np.ptp(poses.keypoints[3, :, 0]) > 1.0
    poses = session.confirm_person(0)
    assert poses.scores[0] == 1.0
    kept = poses.copy()
    poses = session.remove_person(1)
    assert poses.num_persons == 3
    assert np.array_equal(poses.keypoints, kept.keypoints[[0, 2, 3]])
    poses = session.set_visibility(0, "left_knee", 1)
    assert poses.visibility[0, 13] == 1
    poses = session.click(0, "left_knee", 100.0, 100.0)
    assert poses.visibility[0, 13] == 2
    poses = session.set_visibility(0, "left_knee", 0)  # absent: the click is dropped
    assert poses.visibility[0, 13] == 0 and 13 not in session.clicks(0)
    poses = session.click(1, 0, 10.0, 10.0)
    assert poses.visibility[0, 13] == 0  # a user-set visibility survives later decodes
    assert poses.scores[0] == 1.0  # confirmed persons stay confirmed


def test_errors_name_the_problem(model):
    session = model.session(structured_image(), max_persons=2)
    with pytest.raises(IndexError, match="person 7 does not exist"):
        session.click(7, 0, 1.0, 1.0)
    with pytest.raises(IndexError, match="keypoint 17 is outside"):
        session.click(0, 17, 1.0, 1.0)
    with pytest.raises(ValueError, match="no keypoint 'tail'"):
        session.click(0, "tail", 1.0, 1.0)
    with pytest.raises(ValueError, match="set_visibility"):
        session.click(0, 0, 1.0, 1.0, visible=0)
    assert not session.can_undo  # refused actions leave no trace


def test_initial_poses_from_another_detector(model, count_calls):
    rng = np.random.default_rng(3)
    centres = np.array([[60.0, 120.0], [170.0, 110.0], [260.0, 130.0]])
    keypoints = centres[:, None] + rng.uniform(-40, 40, (3, 17, 2))
    boxes = np.concatenate([keypoints.min(1) - 5, keypoints.max(1) + 5], axis=1)
    given = Poses(keypoints, rng.uniform(0.2, 0.9, (3, 17)), np.full((3, 17), 2), boxes,
                  np.array([0.9, 0.8, 0.4]))
    detect_calls = count_calls(model.human_decoder)
    session = model.session(structured_image(), initial_poses=given)
    assert detect_calls[0] == 0  # the given persons replace detection
    assert_same_poses(session.poses, given)  # untouched until the first action
    poses = session.click(1, 10, 200.0, 140.0)
    assert poses.num_persons == 3
    assert tuple(poses.keypoints[1, 10]) == (200.0, 140.0)
    # Click-Pose corrects the given poses: the other keypoints are re-predicted...
    assert not np.allclose(poses.keypoints[1], given.keypoints[1])
    # ...and the other detector's person scores are kept.
    assert np.array_equal(poses.scores, given.scores)
    wrong = Poses(keypoints[:, :5], given.keypoint_scores[:, :5], given.visibility[:, :5],
                  boxes, given.scores)
    with pytest.raises(ValueError, match="5 keypoints per person"):
        model.session(structured_image(), initial_poses=wrong)


def pixel_box(session, candidate: int) -> list[float]:
    cx, cy, w, h = session._candidates.boxes[candidate].tolist()
    height, width = session.image_size
    return [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
            (cy + h / 2) * height]


def test_a_drawn_box_over_a_candidate_starts_from_its_pose(model):
    """A person the model proposed but ranked below the cut is adopted when drawn; a
    candidate that already is a person of the session is not."""
    session = model.session(structured_image(), max_persons=2)
    assert None not in (session.candidate(0), session.candidate(1))  # detected persons
    hidden = next(i for i in range(len(session._candidates.boxes))
                  if i not in (session.candidate(0), session.candidate(1)))
    poses = session.add_person(pixel_box(session, hidden))
    assert session.candidate(2) == hidden
    plain = model.session(structured_image(), max_persons=2, adopt_candidate_iou=None)
    assert not np.allclose(plain.add_person(pixel_box(session, hidden)).keypoints[2],
                           poses.keypoints[2])
    assert plain.candidate(2) is None
    # Over person 0's own candidate: not that candidate again, whether person 0 was
    # detected in this session or came from another detector's poses.
    x0, y0, x1, y1 = pixel_box(session, session.candidate(0))
    near = [x0 + 0.03 * (x1 - x0), y0, x1, y1 - 0.03 * (y1 - y0)]
    session.add_person(near)
    assert session.candidate(3) != session.candidate(0)
    prelabel = model.predict(structured_image()).select([0])  # the best candidate's pose
    adopted = model.session(structured_image(), initial_poses=prelabel)
    adopted.add_person(near)
    assert adopted.candidate(0) is None and adopted.candidate(1) != session.candidate(0)
    session.undo()
    session.undo()
    assert session.num_persons == 2


def test_a_drawn_box_without_a_candidate_is_decoded_in_passes(model, count_calls):
    calls = count_calls(model.keypoint_decoder)
    proposals = []
    for passes in (1, 2, 3):
        session = model.session(structured_image(), initial_poses=Poses.empty(17),
                                adopt_candidate_iou=None, proposal_passes=passes)
        before = calls[0]
        proposals.append(session.add_person([100, 40, 160, 220]).keypoints[0])
        assert calls[0] - before == passes
    assert not np.allclose(proposals[0], proposals[1])
    with pytest.raises(ValueError, match="proposal_passes=0"):
        model.session(structured_image(), proposal_passes=0)


def test_a_session_with_no_persons(model):
    empty = Poses.empty(17)
    session = model.session(structured_image(), initial_poses=empty)
    assert session.num_persons == 0
    poses = session.add_person([100, 40, 160, 220])
    assert poses.num_persons == 1
    assert session.remove_person(0).num_persons == 0


def test_latency_benchmark_runs(capsys):
    """bench/latency.py prints the machine and one JSON line per preset (figures not judged)."""
    import json

    from bench_scripts import load_bench

    bench = load_bench("latency")
    rows = bench.main(["--presets", "tiny", "--size", "160", "--persons", "3", "--clicks", "3",
                       "--predictions", "1", "--device", "cpu",
                       "--click-prior", "tiny-synthetic"])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == rows
    assert rows[0]["kind"] == "machine" and rows[0]["cores"] >= 1 and rows[0]["torch"]
    assert [(r["preset"], r["click_prior"]) for r in rows[1:]] == [("tiny", False),
                                                                   ("tiny", True)]
    for row in rows[1:]:
        assert row["persons"] == 3
        assert row["click_ms_median"] > 0 and row["predict_ms_median"] > 0


def test_session_opens_with_the_full_prediction(model):
    """Without initial poses the session shows what predict() gives (same persons, same
    order), although it decodes from cached memory projections."""
    image = structured_image(1)
    predicted = model.predict(image)
    session = model.session(image)
    assert session.num_persons == predicted.num_persons == model.config.max_humans
    assert np.allclose(session.poses.keypoints, predicted.keypoints, atol=1e-3)
    assert np.allclose(session.poses.scores, predicted.scores, atol=1e-6)
    assert np.allclose(session.poses.boxes, predicted.boxes, atol=1e-3)
    top = model.session(image, min_score=float(predicted.scores[2]))
    assert top.num_persons >= 3
    assert np.array_equal(top.poses.scores, session.poses.scores[:top.num_persons])


def test_two_pass_predictions_show_better_first_poses_and_clicks_decode_as_with_one():
    """keypoint_passes = 2: the session opens on the two-pass poses (what `predict` gives),
    and a click decodes from the first pass's pose, as a one-pass session's click does."""
    one = tiny_model()
    two = tiny_model()
    two.config = two.config.model_copy(update={"keypoint_passes": 2})
    image = structured_image()
    # Every candidate, so that both sessions hold the same persons: the second pass ranks
    # them by its own poses, and an untrained network's near-equal scores may swap places.
    single, double = one.session(image), two.session(image)
    predicted = two.predict(image)
    assert not np.allclose(double.poses.keypoints, single.poses.keypoints)
    # Persons in score order: the first is the prediction's best (never a duplicate).
    np.testing.assert_allclose(double.poses.keypoints[0], predicted.keypoints[0], atol=1e-4)
    # Compared person by person through their candidate, whatever their places.
    single_candidates = [single.candidate(i) for i in range(single.num_persons)]
    same = [single_candidates.index(double.candidate(i)) for i in range(double.num_persons)]
    assert sorted(same) == list(range(single.num_persons))
    after_single = single.click(same[0], "left_wrist", 100.0, 120.0)
    after_double = double.click(0, "left_wrist", 100.0, 120.0)
    np.testing.assert_allclose(after_double.keypoints, after_single.keypoints[same], atol=1e-4)
