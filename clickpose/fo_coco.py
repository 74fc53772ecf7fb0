"""COCO person_keypoints folders <-> FiftyOne datasets, keeping what the built-in types drop.

FiftyOne's COCO importer (`fo.types.COCODetectionDataset`, label_types detections +
keypoints) stores each person twice, a `Detection` (box) and a `Keypoint` (points
normalised to [0, 1], v=0 points as NaN), and keeps COCO's visibility flag per point in
`Keypoint.visible` (fiftyone PR #3808); its exporter writes `visible` back. What a round
trip through the built-in types loses, and this module keeps:
  - sub-pixel positions: the exporter writes int(x * width), truncating;
  - num_keypoints: the exporter writes the number of points, not the number with v > 0;
  - boxes with keypoints: one label field per export, so a Keypoints export has no bbox
    (fiftyone issue #2958);
  - area (the OKS scale of a ground-truth person): the importer drops it;
  - the category's keypoint names, skeleton, sigmas and flip pairs.
Persons are paired across the two fields by their COCO annotation id (`coco_id`).
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from clickpose.io import atomic_write_json
from clickpose.keypoints import KeypointSchema

DETECTIONS, KEYPOINTS = "detections", "keypoints"


def import_coco_keypoints(dataset_dir: str | Path, name: str, labels: str = "annotations.json",
                          images: str = "images", persistent: bool = False,
                          overwrite: bool = False):
    """Load a dataset folder with FiftyOne's COCO importer; restore each person's `area`
    (as a Detection attribute) and set the dataset's default skeleton from the schema."""
    import fiftyone as fo

    dataset_dir = Path(dataset_dir)
    labels_path = dataset_dir / labels
    data = json.loads(labels_path.read_text())
    if not data.get("categories"):
        raise ValueError(f"{labels_path}: 'categories' is empty; a person_keypoints file "
                         "names its keypoints in the person category")
    # The person category is the one that names keypoints, wherever it stands in the list.
    category = next((c for c in data["categories"] if c.get("keypoints")), data["categories"][0])
    schema = KeypointSchema.from_coco_category(category, where=str(labels_path))
    dataset = fo.Dataset.from_dir(
        dataset_dir=str(dataset_dir), dataset_type=fo.types.COCODetectionDataset,
        data_path=images, labels_path=labels, label_types=[DETECTIONS, KEYPOINTS],
        include_id=True, include_annotation_id=True, name=name, persistent=persistent,
        overwrite=overwrite, progress=False)
    dataset.default_skeleton = fo.KeypointSkeleton(labels=list(schema.keypoints),
                                                   edges=[list(e) for e in schema.skeleton])
    dataset.save()
    area = {a["id"]: a.get("area") for a in data.get("annotations", [])}
    for sample in dataset.iter_samples(autosave=True):
        if sample[DETECTIONS] is None:
            continue
        for det in sample[DETECTIONS].detections:
            det["area"] = area.get(det["coco_id"])
    return dataset


def keypoint_to_coco(keypoint, width: int, height: int, decimals: int = 2) -> list:
    """A FiftyOne Keypoint -> COCO [x1, y1, v1, ...] in pixels: NaN points become 0, 0, 0;
    `visible` is kept (2 where absent); positions keep `decimals` places."""
    visible = keypoint.get_attribute_value("visible", None) or None
    flat: list = []
    for i, (x, y) in enumerate(keypoint.points):
        if x is None or y is None or math.isnan(x) or math.isnan(y):
            flat += [0, 0, 0]
            continue
        v = int(visible[i]) if visible is not None else 2
        if v == 0:
            flat += [0, 0, 0]
        else:
            flat += [round(x * width, decimals), round(y * height, decimals), v]
    return flat


def _pairs(detections: list, keypoints: list) -> list[tuple[object, object]]:
    """(detection or None, keypoint) per person: by coco_id, else by position in the lists."""
    by_id = {d.get_attribute_value("coco_id", None): d for d in detections}
    by_id.pop(None, None)
    pairs = []
    for i, kp in enumerate(keypoints):
        cid = kp.get_attribute_value("coco_id", None)
        det = by_id.get(cid) if cid is not None else (
            detections[i] if len(detections) == len(keypoints) else None)
        pairs.append((det, kp))
    return pairs


def export_coco_keypoints(samples, out_dir: str | Path, schema: KeypointSchema,
                          detections_field: str = DETECTIONS, keypoints_field: str = KEYPOINTS,
                          copy_images: bool = True, decimals: int = 2) -> Path:
    """Write `samples` (a FiftyOne dataset or view) as a dataset folder: annotations.json
    (COCO person_keypoints, category from `schema`) and, with copy_images, images/."""
    out_dir = Path(out_dir)
    images, annotations, names = [], [], {}
    samples.compute_metadata()
    for index, sample in enumerate(samples.iter_samples(), start=1):
        width, height = sample.metadata.width, sample.metadata.height
        image_id = int(sample["coco_id"]) if sample.has_field("coco_id") and \
            sample["coco_id"] is not None else index
        file_name = Path(sample.filepath).name
        if names.setdefault(file_name, sample.filepath) != sample.filepath:
            raise ValueError(f"{sample.filepath}: another image is also named '{file_name}'; "
                             "rename one so that images/ can hold both")
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        if copy_images:
            (out_dir / "images").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sample.filepath, out_dir / "images" / file_name)
        dets = sample[detections_field].detections if sample[detections_field] else []
        kps = sample[keypoints_field].keypoints if sample[keypoints_field] else []
        for det, kp in _pairs(dets, kps):
            flat = keypoint_to_coco(kp, width, height, decimals)
            if len(flat) != 3 * schema.num_keypoints:
                raise ValueError(f"{sample.filepath}: a Keypoint in '{keypoints_field}' has "
                                 f"{len(flat) // 3} points, schema '{schema.name}' has "
                                 f"{schema.num_keypoints}; export with the schema it was "
                                 "labelled with")
            bbox = _bbox(det, flat, width, height, decimals)
            area = det.get_attribute_value("area", None) if det is not None else None
            annotations.append({
                "id": kp.get_attribute_value("coco_id", None),
                "image_id": image_id, "category_id": 1, "keypoints": flat,
                "num_keypoints": sum(1 for v in flat[2::3] if v > 0),
                "bbox": bbox, "area": area if area is not None else round(bbox[2] * bbox[3],
                                                                         decimals),
                "iscrowd": int(kp.get_attribute_value("iscrowd", None) or 0),
            })
    _number_new_persons(annotations)
    atomic_write_json(out_dir / "annotations.json", {
        "info": {"description": "exported from FiftyOne dataset "
                 f"'{getattr(samples, 'dataset_name', None) or samples.name}'"},
        "licenses": [], "images": images, "annotations": annotations,
        "categories": [schema.to_coco_category()],
    })
    return out_dir


def _number_new_persons(annotations: list[dict]) -> None:
    """Persons without a COCO id (added in FiftyOne) take ids after every existing one, so
    that no id is given twice."""
    next_id = max((int(a["id"]) for a in annotations if a["id"] is not None), default=0) + 1
    for annotation in annotations:
        if annotation["id"] is None:
            annotation["id"], next_id = next_id, next_id + 1
        else:
            annotation["id"] = int(annotation["id"])


def _bbox(det, flat: list, width: int, height: int, decimals: int) -> list[float]:
    """The person's box in pixels: its Detection's, else the extent of its labelled points."""
    if det is not None:
        x, y, w, h = det.bounding_box
        return [round(x * width, decimals), round(y * height, decimals),
                round(w * width, decimals), round(h * height, decimals)]
    xs = [flat[i] for i in range(0, len(flat), 3) if flat[i + 2] > 0]
    ys = [flat[i + 1] for i in range(0, len(flat), 3) if flat[i + 2] > 0]
    if not xs:
        return [0.0, 0.0, 0.0, 0.0]
    return [min(xs), min(ys), round(max(xs) - min(xs), decimals), round(max(ys) - min(ys),
                                                                        decimals)]
