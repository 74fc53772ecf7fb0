import numpy as np
import pytest

from clickpose.poses import Poses


def _poses():
    kp = np.array([[[10.0, 20.0], [30.0, 40.0]], [[5.0, 6.0], [7.0, 8.0]]])
    return Poses(kp, np.array([[0.9, 0.5], [0.2, 0.1]]), np.full((2, 2), 2),
                 np.array([[0, 0, 50, 60], [1, 2, 9, 10.0]]), np.array([0.8, 0.3]))


def test_coco_results_round_trip():
    p = _poses()
    results = p.to_coco_results(image_id=7)
    assert results[0]["keypoints"] == [10.0, 20.0, 0.9, 30.0, 40.0, 0.5]
    assert results[1]["bbox"] == [1.0, 2.0, 8.0, 8.0]
    back = Poses.from_coco_results(results, num_keypoints=2)
    np.testing.assert_allclose(back.keypoints, p.keypoints)
    np.testing.assert_allclose(back.boxes, p.boxes)
    np.testing.assert_allclose(back.scores, p.scores)


def test_results_without_bbox_take_the_keypoint_extent():
    back = Poses.from_coco_results([{"image_id": 1, "keypoints": [1, 2, 1, 5, 9, 1], "score": 1}], 2)
    np.testing.assert_allclose(back.boxes, [[1, 2, 5, 9]])


def test_wrong_keypoint_count_is_named():
    with pytest.raises(ValueError, match="expected 6"):
        Poses.from_coco_results([{"image_id": 1, "keypoints": [1, 2, 1], "score": 1}], 2)


def test_select_and_copy_are_independent():
    p = _poses()
    q = p.copy()
    q.keypoints[0, 0, 0] = -1
    assert p.keypoints[0, 0, 0] == 10.0
    assert p.select(np.array([False, True])).scores.tolist() == [0.3]
    assert Poses.empty(17).num_persons == 0
