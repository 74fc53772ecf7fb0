"""COCO keypoint AP/AR (pycocotools COCOeval), for any keypoint schema, and per-image AP.

The schema's OKS sigmas replace COCOeval's built-in COCO-17 ones, so a grown schema
(extra keypoints) is evaluated with its own sigmas.
"""
from __future__ import annotations

import contextlib
import copy
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from clickpose.evaluate.image_ap import ImageAp
from clickpose.evaluate.inputs import (
    check_detections,
    keypoint_category,
    load_detections,
    load_ground_truth,
    quiet_coco,
    schema_for,
)
from clickpose.keypoints import KeypointSchema

# COCOeval.stats[:10] for iouType 'keypoints', in order.
STAT_NAMES = ("AP", "AP50", "AP75", "AP_medium", "AP_large",
              "AR", "AR50", "AR75", "AR_medium", "AR_large")


@dataclass
class ApResult:
    stats: dict[str, float]   # STAT_NAMES -> value; -1 where COCOeval has no person to score
    num_images: int
    num_persons: int          # persons that count (not crowd, with keypoints)
    num_detections: int
    schema_name: str

    @property
    def ap(self) -> float:
        return self.stats["AP"]

    def to_dict(self) -> dict:
        return {"stats": dict(self.stats), "num_images": self.num_images,
                "num_persons": self.num_persons, "num_detections": self.num_detections,
                "schema": self.schema_name}


def _empty_results_coco(coco_gt: COCO) -> COCO:
    """A result set with no detections (pycocotools' loadRes cannot load an empty list)."""
    return quiet_coco({"images": coco_gt.dataset["images"],
                       "categories": coco_gt.dataset["categories"], "annotations": []})


def run_cocoeval(dataset: dict, results: list[dict], sigmas: np.ndarray,
                 image_ids: list | None = None) -> COCOeval:
    """COCOeval 'keypoints' with the given sigmas, quietly, on private copies of the inputs."""
    coco_gt = quiet_coco(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = (coco_gt.loadRes(copy.deepcopy(results)) if results
                   else _empty_results_coco(coco_gt))
        evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        if image_ids is not None:
            evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def evaluate_ap(gt: str | Path | dict, dt: str | Path | list,
                schema: KeypointSchema | None = None) -> ApResult:
    """COCO keypoint AP/AR of detections `dt` against ground truth `gt`."""
    dataset, gt_where = load_ground_truth(gt)
    schema = schema_for(dataset, schema, gt_where)
    results, dt_where = load_detections(dt)
    check_detections(results, dataset, schema, dt_where, gt_where)
    evaluator = run_cocoeval(dataset, results, schema.sigmas_array)
    persons = sum(1 for a in dataset["annotations"]
                  if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0)
    return ApResult(stats={n: float(v) for n, v in zip(STAT_NAMES, evaluator.stats[:10])},
                    num_images=len(dataset["images"]), num_persons=persons,
                    num_detections=len(results), schema_name=schema.name)


def image_evaluators(dataset: dict, schema: KeypointSchema) -> dict[int, ImageAp]:
    """One ImageAp per image of the keypoint category (images without annotations included)."""
    category_id = keypoint_category(dataset, "ground truth")["id"]
    by_image: dict[int, list[dict]] = {im["id"]: [] for im in dataset["images"]}
    for ann in dataset["annotations"]:
        if ann["category_id"] == category_id:
            by_image[ann["image_id"]].append(ann)
    return {image_id: ImageAp(anns, schema.sigmas_array) for image_id, anns in by_image.items()}


def per_image_ap(gt: str | Path | dict, dt: str | Path | list,
                 schema: KeypointSchema | None = None) -> dict[int, float]:
    """{image_id: OKS AP of that image alone} over images with at least one person that counts.

    Equals COCOeval with params.imgIds = [image_id] (stats[0]); images without such a person
    (COCOeval's -1) are left out, as the official NoC evaluation leaves them out.
    """
    dataset, gt_where = load_ground_truth(gt)
    schema = schema_for(dataset, schema, gt_where)
    results, dt_where = load_detections(dt)
    check_detections(results, dataset, schema, dt_where, gt_where)
    category_id = keypoint_category(dataset, gt_where)["id"]
    by_image: dict[int, list[dict]] = defaultdict(list)
    for r in results:
        if r["category_id"] == category_id:
            by_image[r["image_id"]].append(r)
    k = schema.num_keypoints
    out = {}
    for image_id, evaluator in image_evaluators(dataset, schema).items():
        if not evaluator.has_persons:
            continue
        dets = by_image.get(image_id, [])
        keypoints = np.array([r["keypoints"] for r in dets], dtype=np.float64).reshape(-1, k, 3)
        scores = np.array([r["score"] for r in dets], dtype=np.float64)
        out[image_id] = evaluator.ap(keypoints[..., :2], scores)
    return out
