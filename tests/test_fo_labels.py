"""The pool as a FiftyOne dataset (its own MongoDB): poses as Keypoints with confidence and
visibility, boxes as Detections, the schema's skeleton, selection scores as sample fields."""
from __future__ import annotations

import math

import fiftyone as fo
import numpy as np
import pytest
from annotator_fixtures import make_images, tiny_model

from clickpose.keypoints import coco17
from clickpose.labels_fo import (
    add_predictions,
    keypoints_to_poses,
    pool_dataset,
    poses_to_detections,
    poses_to_keypoints,
    sample_poses,
    set_selection_fields,
)
from clickpose.poses import Poses
from selection.results import ImageScore, PersonScore


def _poses() -> Poses:
    rng = np.random.default_rng(0)
    kps = rng.uniform(10, 200, (2, 17, 2))
    vis = rng.integers(0, 3, (2, 17))
    boxes = np.array([[10.0, 20.0, 110.5, 220.25], [50.0, 5.0, 90.0, 60.0]])
    return Poses(kps, rng.uniform(0, 1, (2, 17)), vis, boxes, np.array([0.9, 0.4]))


def test_poses_keypoints_round_trip_keeps_points_confidence_visibility_boxes():
    poses = _poses()
    labels = poses_to_keypoints(poses, 320, 240, hide_unlabelled=True)
    person = labels.keypoints[0]
    assert person.label == "person" and len(person.points) == 17
    assert person.visible == poses.visibility[0].tolist()
    assert person.confidence == pytest.approx(poses.keypoint_scores[0].tolist())
    for (x, y), v, (px, py) in zip(person.points, poses.visibility[0], poses.keypoints[0]):
        if v == 0:
            assert math.isnan(x) and math.isnan(y)    # not labelled: not drawn
        else:
            assert (x, y) == pytest.approx((px / 320, py / 240))
    assert person.bounding_box == pytest.approx([10 / 320, 20 / 240, 100.5 / 320, 200.25 / 240])
    back = keypoints_to_poses(labels, 320, 240, 17)
    labelled = poses.visibility > 0
    assert np.allclose(back.keypoints[labelled], poses.keypoints[labelled])
    assert np.array_equal(back.visibility, poses.visibility)
    assert np.allclose(back.boxes, poses.boxes) and np.allclose(back.scores, poses.scores)
    # Predictions keep every point (the App shows the model's guess everywhere).
    shown = poses_to_keypoints(poses, 320, 240, hide_unlabelled=False).keypoints[0]
    assert not any(math.isnan(v) for point in shown.points for v in point)
    dets = poses_to_detections(poses, 320, 240).detections
    assert dets[1].bounding_box == pytest.approx([50 / 320, 5 / 240, 40 / 320, 55 / 240])
    assert dets[1].confidence == pytest.approx(0.4)


def test_pool_predictions_skeleton_and_selection_fields(tmp_path):
    paths = make_images(tmp_path / "data", 3)
    dataset = pool_dataset(tmp_path / "data" / "images", "test-fo-pool", coco17(),
                           overwrite=True)
    try:
        assert len(dataset) == 3
        assert dataset.default_skeleton.labels == coco17().keypoints
        assert [tuple(e) for e in dataset.default_skeleton.edges] == coco17().skeleton
        model = tiny_model()
        add_predictions(dataset, model, min_score=0.0, max_persons=2, progress=False)
        sample = dataset.first()
        assert len(sample.predictions.keypoints) == 2
        assert len(sample.predictions_boxes.detections) == 2
        expected = model.predict(paths[0])
        top = np.argsort(-expected.scores)[:2]
        got = sample_poses(sample, "predictions", 17)
        assert np.allclose(got.keypoints, expected.keypoints[top], atol=1e-3)
        assert np.allclose(got.keypoint_scores, expected.keypoint_scores[top], atol=1e-6)
        # Selection's scores, matched by file stem (the synthetic image ids).
        scores = [ImageScore(image_id=i + 1, method="entropy", score=s, persons=[
            PersonScore(index=0, score=0.1), PersonScore(index=1, score=0.7)])
            for i, s in enumerate([0.3, 0.9])]
        matched = set_selection_fields(dataset, scores, al_round=2,
                                       reasons={2: "top uncertainty"})
        assert matched == 2
        ranked = dataset.exists("uncertainty").sort_by("uncertainty", reverse=True)
        assert ranked.values("uncertainty") == [0.9, 0.3]
        assert ranked.values("selection_reason") == ["top uncertainty", "entropy"]
        assert ranked.values("al_round") == [2, 2]
        assert ranked.first().person_uncertainty == [0.7, 0.1]    # worst first
        assert dataset.match(fo.ViewField("uncertainty") > 0.5).count() == 1
    finally:
        dataset.delete()
