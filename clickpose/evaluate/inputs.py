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
import numbers
from pathlib import Path

from pycocotools.coco import COCO

from clickpose.keypoints import KeypointSchema


class EvalInputError(ValueError):
    """Ground truth or detections that cannot be evaluated as given."""


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise EvalInputError(f"{path}: {what} file not found")
    try:
        return json.loads(path.read_bytes())
    except json.JSONDecodeError as e:
        raise EvalInputError(f"{path}: not valid JSON ({e}); expected a COCO {what} file") from None
    except UnicodeDecodeError as e:
        raise EvalInputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); expected "
                             f"a COCO {what} file (JSON)") from None


def _numbers_problem(value, count: int) -> str | None:
    """Why `value` is not a list of `count` finite numbers."""
    if not isinstance(value, list):
        return f"is {value!r}, expected a list of {count} numbers"
    if len(value) != count:
        return f"has {len(value)} numbers, expected {count}"
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return f"holds {v!r} at position {i}, expected a number"
        if not math.isfinite(v):
            return f"holds {v} at position {i}, expected a finite number"
    return None


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_id(value) -> bool:
    """An id pycocotools can index: COCO's integers (or strings)."""
    return _is_int(value) or isinstance(value, str)


def load_ground_truth(gt: str | Path | dict, need_sizes: bool = False) -> tuple[dict, str]:
    """(COCO person_keypoints dataset, a name for messages); checks the fields COCOeval needs
    (and each image's width and height with need_sizes, as NoC does)."""
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
    for field in ("images", "annotations", "categories"):
        for i, entry in enumerate(dataset[field]):
            if not isinstance(entry, dict) or not _is_id(entry.get("id")):
                raise EvalInputError(f"{where}: {field}[{i}] is not an object with an 'id'; "
                                     "give every entry an integer id")
    images = {im["id"] for im in dataset["images"]}
    if need_sizes:
        for im in dataset["images"]:
            for key in ("width", "height"):
                if not _is_int(im.get(key)) or im[key] <= 0:
                    raise EvalInputError(f"{where}: image {im['id']}: '{key}' is "
                                         f"{im.get(key)!r}; give the image's {key} in pixels")
    categories = {c["id"]: c for c in dataset["categories"]}
    for ann in dataset["annotations"]:
        ann_where = f"{where}: annotation {ann['id']} (image {ann.get('image_id')})"
        if not _is_id(ann.get("image_id")) or ann["image_id"] not in images:
            raise EvalInputError(f"{ann_where}: image id not in 'images'; add the image entry")
        category = categories.get(ann.get("category_id")) if _is_id(ann.get("category_id")) \
            else None
        if category is None:
            raise EvalInputError(f"{ann_where}: category_id {ann.get('category_id')!r} is not in "
                                 "'categories'")
        if "keypoints" not in category:
            continue
        expected = 3 * len(category["keypoints"])
        if isinstance(ann.get("keypoints"), list) and len(ann["keypoints"]) != expected:
            raise EvalInputError(
                f"{ann_where}: 'keypoints' has {len(ann['keypoints'])} numbers, expected "
                f"{expected} ({expected // 3} x 3: x, y, v)")
        for field, fix in (("keypoints", f"x, y, v for each of the {expected // 3} keypoints"),
                           ("area", "the person's segmentation area (or bbox w*h)"),
                           ("bbox", "[x, y, w, h] in pixels"),
                           ("num_keypoints", "the count of keypoints with v > 0")):
            if field not in ann:
                raise EvalInputError(f"{ann_where}: no '{field}'; add {fix}")
        problem = _numbers_problem(ann["keypoints"], expected)
        if problem:
            raise EvalInputError(f"{ann_where}: 'keypoints' {problem}; give x, y, v for each of "
                                 f"the {expected // 3} keypoints")
        problem = _numbers_problem(ann["bbox"], 4)
        if problem or ann["bbox"][2] < 0 or ann["bbox"][3] < 0:
            raise EvalInputError(f"{ann_where}: 'bbox' {problem or 'has a negative size'}; give "
                                 "[x, y, w, h] in pixels, w, h >= 0")
        area = ann["area"]
        if _numbers_problem([area], 1) or area < 0:
            raise EvalInputError(f"{ann_where}: 'area' is {area!r}; give the person's "
                                 "segmentation area (or bbox w*h) in square pixels")
        if not _is_int(ann["num_keypoints"]) or ann["num_keypoints"] < 0:
            raise EvalInputError(f"{ann_where}: 'num_keypoints' is {ann['num_keypoints']!r}; "
                                 "give the count of keypoints with v > 0")
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
    """Each result is a COCO keypoint result of a ground-truth image and category, with
    finite numbers: COCOeval would match a NaN pose to a person as if it were perfect."""
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
        if not _is_id(r["image_id"]) or r["image_id"] not in images:
            truth = "the ground truth" + ("" if gt_where == "ground truth" else f" {gt_where}")
            raise EvalInputError(f"{r_where}: image id {r['image_id']!r} is not in {truth}; "
                                 "predict on the images of that file")
        if not _is_id(r["category_id"]) or r["category_id"] not in categories:
            raise EvalInputError(f"{r_where}: category_id {r['category_id']!r} is not a "
                                 f"ground-truth category ({sorted(categories)})")
        problem = _numbers_problem(r["keypoints"], expected)
        if problem:
            raise EvalInputError(f"{r_where}: 'keypoints' {problem} ({schema.num_keypoints} x 3: "
                                 "x, y, score; 0, 0, 0 for a keypoint not found)")
        if "bbox" in r:
            problem = _numbers_problem(r["bbox"], 4)
            if problem:
                raise EvalInputError(f"{r_where}: 'bbox' {problem}; give [x, y, w, h] in pixels "
                                     "or leave the field out")
        if not isinstance(r["score"], (int, float)) or not math.isfinite(r["score"]):
            raise EvalInputError(f"{r_where}: 'score' must be a finite number, got {r['score']!r}")


def quiet_coco(dataset: dict) -> COCO:
    """A pycocotools COCO over a private copy of `dataset` (COCOeval writes into annotations)."""
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
