"""A synthetic dataset through FiftyOne's COCO importer and exporter, and through
clickpose.fo_coco: keypoints, visibility, boxes and areas survive."""
from __future__ import annotations

import json
import math
import uuid

import numpy as np
import pytest
from pycocotools.coco import COCO

from clickpose.data.synthetic import generate_dataset
from clickpose.fo_coco import export_coco_keypoints, import_coco_keypoints, keypoint_to_coco
from clickpose.keypoints import KeypointSchema

fo = pytest.importorskip("fiftyone")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = generate_dataset(tmp_path_factory.mktemp("fo") / "synth", 5, seed=21,
                              extra_keypoints=("head_top",), progress=False)
    data = json.loads((folder / "annotations.json").read_text())
    assert any(0 in a["keypoints"][2::3] for a in data["annotations"])   # all three v occur
    assert any(1 in a["keypoints"][2::3] for a in data["annotations"])
    return folder, data


@pytest.fixture(scope="module")
def dataset(synthetic):
    folder, _ = synthetic
    ds = import_coco_keypoints(folder, f"clickpose-test-roundtrip-{uuid.uuid4().hex[:10]}")
    yield ds
    ds.delete()


def _originals(data):
    return {a["id"]: a for a in data["annotations"]}


def test_fiftyone_importer_keeps_visibility_and_normalised_points(synthetic, dataset):
    _, data = synthetic
    original = _originals(data)
    seen = 0
    for sample in dataset.iter_samples():
        w, h = sample.metadata.width, sample.metadata.height
        for kp in sample["keypoints"].keypoints:
            ann = original[kp["coco_id"]]
            coco = np.asarray(ann["keypoints"], float).reshape(-1, 3)
            assert list(kp["visible"]) == [int(v) for v in coco[:, 2]]
            pts = np.asarray(kp.points, float)
            labelled = coco[:, 2] > 0
            assert np.all(np.isnan(pts[~labelled]))                 # v=0 -> NaN
            np.testing.assert_allclose(pts[labelled] * [w, h], coco[labelled, :2], atol=1e-6)
            seen += 1
        dets = {d["coco_id"]: d for d in sample["detections"].detections}
        for cid, det in dets.items():
            assert det["area"] == original[cid]["area"]          # restored by import helper
    assert seen == len(data["annotations"])
    assert dataset.default_skeleton.labels[-1] == "head_top"


def test_fiftyone_exporter_writes_visibility_but_truncates_positions(synthetic, dataset, tmp_path):
    _, data = synthetic
    dataset.export(export_dir=str(tmp_path / "fo"), dataset_type=fo.types.COCODetectionDataset,
                   label_field="keypoints", export_media=False)
    out = json.loads((tmp_path / "fo" / "labels.json").read_text())
    original = sorted(data["annotations"], key=lambda a: (a["image_id"], a["id"]))
    exported = sorted(out["annotations"], key=lambda a: (a["image_id"], a["id"]))
    assert len(exported) == len(original)
    for a, b in zip(original, exported):
        ka, kb = np.asarray(a["keypoints"], float).reshape(-1, 3), \
            np.asarray(b["keypoints"], float).reshape(-1, 3)
        assert np.array_equal(ka[:, 2], kb[:, 2])                # 0 / 1 / 2 all survive
        assert np.all(np.abs(ka[:, :2] - kb[:, :2]) < 1.0)       # int(x * width): < 1 px off
        assert "bbox" not in b                                  # one label field per export


def test_fo_coco_export_round_trips_exactly(synthetic, dataset, tmp_path):
    folder, data = synthetic
    schema = KeypointSchema.from_coco_category(data["categories"][0])
    out = export_coco_keypoints(dataset, tmp_path / "back", schema)
    back = json.loads((out / "annotations.json").read_text())
    assert back["categories"] == data["categories"]
    assert back["images"] == data["images"]
    assert (out / "images" / "000001.jpg").read_bytes() == \
        (folder / "images" / "000001.jpg").read_bytes()
    fields = ("id", "image_id", "category_id", "keypoints", "num_keypoints", "bbox", "area",
              "iscrowd")
    original = {a["id"]: {f: a[f] for f in fields} for a in data["annotations"]}
    exported = {a["id"]: {f: a[f] for f in fields} for a in back["annotations"]}
    assert exported.keys() == original.keys()
    for aid, ann in original.items():
        got = exported[aid]
        np.testing.assert_allclose(got.pop("keypoints"), ann.pop("keypoints"), atol=0.006)
        np.testing.assert_allclose(got.pop("bbox"), ann.pop("bbox"), atol=0.006)
        assert got == ann
    COCO(str(out / "annotations.json"))                        # pycocotools reads it


def test_persons_added_in_fiftyone_get_ids_no_other_person_has(synthetic, tmp_path):
    folder, data = synthetic
    schema = KeypointSchema.from_coco_category(data["categories"][0])
    ds = import_coco_keypoints(folder, f"clickpose-test-new-person-{uuid.uuid4().hex[:10]}")
    try:
        sample = ds.first()
        points = [[0.1 + 0.01 * k, 0.2 + 0.01 * k] for k in range(schema.num_keypoints)]
        sample["keypoints"].keypoints.append(fo.Keypoint(points=points))   # no coco_id
        sample.save()
        back = json.loads((export_coco_keypoints(ds, tmp_path / "out", schema)
                           / "annotations.json").read_text())
    finally:
        ds.delete()
    ids = [a["id"] for a in back["annotations"]]
    assert len(ids) == len(data["annotations"]) + 1 and len(set(ids)) == len(ids)
    assert set(ids) >= {a["id"] for a in data["annotations"]}       # the originals keep theirs
    assert max(ids) == max(a["id"] for a in data["annotations"]) + 1
    COCO(str(tmp_path / "out" / "annotations.json"))


def test_the_schema_comes_from_the_category_with_keypoints(synthetic, tmp_path):
    import shutil

    folder, data = synthetic
    copy = tmp_path / "two-categories"
    shutil.copytree(folder, copy)
    other = {"id": 7, "name": "dog", "supercategory": "animal"}
    (copy / "annotations.json").write_text(json.dumps(
        {**data, "categories": [other, *data["categories"]]}))
    ds = import_coco_keypoints(copy, f"clickpose-test-categories-{uuid.uuid4().hex[:10]}")
    try:
        assert ds.default_skeleton.labels[-1] == "head_top"
    finally:
        ds.delete()


def test_keypoint_to_coco_keeps_visibility_and_missing_points():
    kp = fo.Keypoint(label="person", points=[(0.5, 0.25), (float("nan"), float("nan")),
                                             (0.125, 0.75)], visible=[2, 0, 1])
    assert keypoint_to_coco(kp, 200, 100) == [100.0, 25.0, 2, 0, 0, 0, 25.0, 75.0, 1]
    plain = fo.Keypoint(label="person", points=[(0.1, 0.2), (float("nan"), float("nan"))])
    flat = keypoint_to_coco(plain, 10, 10)
    assert flat[2] == 2 and flat[3:] == [0, 0, 0] and math.isclose(flat[0], 1.0)
