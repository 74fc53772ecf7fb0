"""Poses (pixels) <-> FiftyOne labels (normalised to [0, 1]).

One person is one `fo.Keypoint` (label "person"): `points` normalised, `confidence` per
point, COCO visibility per point in the `visible` attribute (as FiftyOne's COCO importer
keeps it), the person score in `score`, and the person box in `bounding_box` ([x, y, w, h]
normalised, FiftyOne's box convention) so that a Keypoints field alone holds the whole
label. With hide_unlabelled (ground truth), v=0 points are NaN, as the COCO importer writes
them, so the App does not draw points nobody placed. The box also goes to a separate
`fo.Detections` field, which the App draws and filters like any detection.
"""
from __future__ import annotations

import math

import numpy as np

from clickpose.keypoints import KeypointSchema
from clickpose.poses import Poses

PERSON = "person"


def skeleton_of(schema: KeypointSchema):
    import fiftyone as fo

    return fo.KeypointSkeleton(labels=list(schema.keypoints),
                               edges=[list(e) for e in schema.skeleton])


def set_skeleton(dataset, schema: KeypointSchema, field: str | None = None) -> None:
    """The schema's skeleton as the dataset default (or for one field): the App draws it."""
    if field is None:
        dataset.default_skeleton = skeleton_of(schema)
    else:
        dataset.skeletons[field] = skeleton_of(schema)
    dataset.save()


def _box_xywhn(box_xyxy, width: int, height: int) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    return [x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height]


def poses_to_keypoints(poses: Poses, width: int, height: int, hide_unlabelled: bool = True,
                       ids: list[str] | None = None, attributes: list[dict] | None = None):
    """Poses of one image -> fo.Keypoints; `ids` keep label ids across edits."""
    import fiftyone as fo

    people = []
    for p in range(poses.num_persons):
        points = []
        for (x, y), v in zip(poses.keypoints[p], poses.visibility[p]):
            hidden = hide_unlabelled and int(v) == 0
            points.append([math.nan, math.nan] if hidden else [float(x) / width,
                                                                 float(y) / height])
        kp = fo.Keypoint(label=PERSON, points=points,
                         confidence=[float(c) for c in poses.keypoint_scores[p]],
                         visible=[int(v) for v in poses.visibility[p]],
                         score=float(poses.scores[p]),
                         bounding_box=_box_xywhn(poses.boxes[p], width, height),
                         **(attributes[p] if attributes else {}))
        if ids is not None:
            kp.id = ids[p]
        people.append(kp)
    return fo.Keypoints(keypoints=people)


def poses_to_detections(poses: Poses, width: int, height: int, ids: list[str] | None = None):
    import fiftyone as fo

    dets = []
    for p in range(poses.num_persons):
        det = fo.Detection(label=PERSON, bounding_box=_box_xywhn(poses.boxes[p], width, height),
                           confidence=float(poses.scores[p]))
        if ids is not None:
            det.id = ids[p]
        dets.append(det)
    return fo.Detections(detections=dets)


def keypoints_to_poses(keypoints, width: int, height: int, num_keypoints: int,
                       detections=None) -> Poses:
    """fo.Keypoints (or None) -> Poses. NaN points get v=0 at (0, 0); boxes come from each
    Keypoint's `bounding_box`, else from `detections` in the same order, else the extent of
    the labelled points."""
    people = keypoints.keypoints if keypoints is not None else []
    if not people:
        return Poses.empty(num_keypoints)
    dets = detections.detections if detections is not None else []
    kps = np.zeros((len(people), num_keypoints, 2))
    conf = np.ones((len(people), num_keypoints))
    vis = np.zeros((len(people), num_keypoints), dtype=np.int64)
    boxes = np.zeros((len(people), 4))
    scores = np.ones(len(people))
    for p, person in enumerate(people):
        if len(person.points) != num_keypoints:
            raise ValueError(f"Keypoint {person.id} has {len(person.points)} points; the schema "
                             f"has {num_keypoints}; label it with the same keypoints")
        visible = person.get_attribute_value("visible", None)
        for k, (x, y) in enumerate(person.points):
            if x is None or y is None or math.isnan(x) or math.isnan(y):
                continue
            kps[p, k] = (x * width, y * height)
            vis[p, k] = int(visible[k]) if visible is not None else 2
        if person.confidence is not None:
            conf[p] = [c if c is not None else 1.0 for c in person.confidence]
        score = person.get_attribute_value("score", None)
        scores[p] = score if score is not None else 1.0
        box = person.get_attribute_value("bounding_box", None)
        if box is None and p < len(dets):
            box = dets[p].bounding_box
        if box is not None:
            x, y, w, h = box
            boxes[p] = (x * width, y * height, (x + w) * width, (y + h) * height)
        elif (vis[p] > 0).any():
            pts = kps[p][vis[p] > 0]
            boxes[p] = (*pts.min(axis=0), *pts.max(axis=0))
    return Poses(kps, conf, vis, boxes, scores)


def detections_to_boxes(detections, width: int, height: int) -> np.ndarray:
    """fo.Detections -> (N, 4) xyxy pixels."""
    if detections is None or not detections.detections:
        return np.zeros((0, 4))
    return np.array([[x * width, y * height, (x + w) * width, (y + h) * height]
                     for x, y, w, h in (d.bounding_box for d in detections.detections)])
