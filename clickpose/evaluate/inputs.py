"""Ground truth and detections for evaluation: loading and the checks pycocotools does not do.

pycocotools fails late and vaguely (an assert in loadRes, a KeyError deep in COCOeval, or
silently dropping a detection of an unknown category); these checks fail early and say which
file, which entry, which field and how to fix it.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path

from pycocotools.coco import COCO

from clickpose.keypoints import KeypointSchema


class EvalInputError(ValueError):
    """Ground truth or detections that cannot be evaluated as given."""


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise EvalInputError(f"{path}: {what} file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EvalInputError(f"{path}: not valid JSON ({e}); expected a COCO {what} file") from None


def load_ground_truth(gt: str | Path | dict) -> tuple[dict, str]:
    """(COCO person_keypoints dataset, a name for messages); checks the fields COCOeval needs."""
    if isinstance(gt, dict):
        dataset, where = gt, "ground truth"
    else:
        dataset, where = _read_json(Path(gt), "ground-truth annotations"), str(gt)
    if not isinstance(dataset, dict):
        raise EvalInputError(f"{where}: expected a COCO dataset object, found "
                             f"{type(dataset).__name__}")
    for field in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(field), list):
            raise EvalInputError(f"{where}: no '{field}' list; a COCO person_keypoints file has "
                                 "'images', 'annotations' and 'categories'")
    images = {im.get("id") for im in dataset["images"]}
    categories = {c.get("id"): c for c in dataset["categories"]}
    for ann in dataset["annotations"]:
        ann_where = f"{where}: annotation {ann.get('id')} (image {ann.get('image_id')})"
        if ann.get("image_id") not in images:
            raise EvalInputError(f"{ann_where}: image id not in 'images'; add the image entry")
        category = categories.get(ann.get("category_id"))
        if category is None:
            raise EvalInputError(f"{ann_where}: category_id {ann.get('category_id')} is not in "
                                 "'categories'")
        if "keypoints" not in category:
            continue
        expected = 3 * len(category["keypoints"])
        if len(ann.get("keypoints", [])) != expected:
            raise EvalInputError(
                f"{ann_where}: 'keypoints' has {len(ann.get('keypoints', []))} numbers, expected "
                f"{expected} ({expected // 3} x 3: x, y, v)")
        for field, fix in (("area", "the person's segmentation area (or bbox w*h)"),
                           ("bbox", "[x, y, w, h] in pixels"),
                           ("num_keypoints", "the count of keypoints with v > 0")):
            if field not in ann:
                raise EvalInputError(f"{ann_where}: no '{field}'; add {fix}")
    return dataset, where


def load_detections(dt: str | Path | list) -> tuple[list[dict], str]:
    """(COCO keypoint results, a name for messages)."""
    if isinstance(dt, list):
        return dt, "detections"
    results = _read_json(Path(dt), "keypoint results")
    if not isinstance(results, list):
        raise EvalInputError(f"{dt}: expected a JSON list of COCO keypoint results "
                             "({image_id, category_id, keypoints, score}), found "
                             f"{type(results).__name__}")
    return results, str(dt)


def keypoint_category(dataset: dict, where: str) -> dict:
    """The category that carries the keypoint names (the person category)."""
    for category in dataset["categories"]:
        if category.get("keypoints"):
            return category
    raise EvalInputError(f"{where}: no category lists 'keypoints'; keypoint evaluation needs a "
                         "person_keypoints file")


def schema_for(dataset: dict, schema: KeypointSchema | None, where: str) -> KeypointSchema:
    """The given schema, checked against the ground truth; else the ground truth's own."""
    category = keypoint_category(dataset, where)
    own = KeypointSchema.from_coco_category(category, where=f"{where}: category {category['id']}")
    if schema is None:
        return own
    if schema.num_keypoints != own.num_keypoints:
        raise EvalInputError(
            f"{where}: persons have {own.num_keypoints} keypoints here, but the schema "
            f"'{schema.name}' has {schema.num_keypoints}; evaluate with the schema of the data")
    return schema


def check_detections(results: list[dict], dataset: dict, schema: KeypointSchema,
                     where: str, gt_where: str) -> None:
    images = {im["id"] for im in dataset["images"]}
    categories = {c["id"] for c in dataset["categories"]}
    expected = 3 * schema.num_keypoints
    for i, r in enumerate(results):
        r_where = f"{where}: result {i} (image {r.get('image_id') if isinstance(r, dict) else '?'})"
        if not isinstance(r, dict):
            raise EvalInputError(f"{where}: result {i} is not an object")
        for field in ("image_id", "category_id", "keypoints", "score"):
            if field not in r:
                raise EvalInputError(f"{r_where}: no '{field}'; a keypoint result is "
                                     "{image_id, category_id, keypoints, score}")
        if r["image_id"] not in images:
            raise EvalInputError(f"{r_where}: image id {r['image_id']} is not in the ground truth "
                                 f"{gt_where}; predict on the images of that file")
        if r["category_id"] not in categories:
            raise EvalInputError(f"{r_where}: category_id {r['category_id']} is not a ground-truth "
                                 f"category ({sorted(categories)})")
        if len(r["keypoints"]) != expected:
            raise EvalInputError(
                f"{r_where}: 'keypoints' has {len(r['keypoints'])} numbers, expected {expected} "
                f"({schema.num_keypoints} x 3: x, y, score)")
        if not isinstance(r["score"], (int, float)) or not math.isfinite(r["score"]):
            raise EvalInputError(f"{r_where}: 'score' must be a finite number, got {r['score']!r}")


def quiet_coco(dataset: dict) -> COCO:
    """A pycocotools COCO over a private copy of `dataset` (COCOeval writes into annotations)."""
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
