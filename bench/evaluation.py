"""What the training benchmarks measure on a checkpoint: COCO OKS AP and NoC per mode.

Each figure is printed as a JSON line (stdout carries only JSON lines; progress goes to
stderr) and returned.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from clickpose.evaluate import NocSettings, checkpoint_editors, evaluate_ap, run_noc
from clickpose.evaluate.inputs import load_detections, load_ground_truth, schema_for
from clickpose.evaluate.sources import prediction_editors
from clickpose.keypoints import KeypointSchema
from clickpose.train.predict import predict_folder

NOC_TARGETS = (85, 90, 95)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def noc_summary(result) -> dict:
    summary = result.summary()
    return {"mode": summary["mode"], "n_images": summary["n_images"],
            **{f"NoC@{t}": summary["targets"][str(t)]["NoC"] for t in NOC_TARGETS},
            **{f"never_reached@{t}": summary["targets"][str(t)]["n_never_reached"]
               for t in NOC_TARGETS},
            "dataset_ap_after_clicks": summary["dataset_ap_after"]}


def ground_truth(data_dir: Path) -> tuple[dict, KeypointSchema]:
    """The folder's checked COCO ground truth and its keypoint schema."""
    dataset, where = load_ground_truth(data_dir / "annotations.json")
    return dataset, schema_for(dataset, None, where)


def first_images(dataset: dict, count: int | None) -> dict:
    """The COCO dict restricted to its first `count` images (all when None)."""
    if count is None or count >= len(dataset["images"]):
        return dataset
    keep = {im["id"] for im in dataset["images"][:count]}
    return {**dataset, "images": [im for im in dataset["images"] if im["id"] in keep],
            "annotations": [a for a in dataset["annotations"] if a["image_id"] in keep]}


def measure_noc(dataset: dict, editors, mode: str, schema: KeypointSchema, label: str) -> dict:
    started = time.perf_counter()
    print(f"NoC ({label}, {mode}) on {len(dataset['images'])} images...", file=sys.stderr,
          flush=True)
    result = run_noc(dataset, editors, NocSettings(targets=NOC_TARGETS, mode=mode),
                     schema=schema, progress=False)
    summary = noc_summary(result)
    emit({"kind": "noc", "source": label, **summary,
          "seconds": round(time.perf_counter() - started, 1)})
    return summary


def evaluate_checkpoint(checkpoint: Path, data_dir: Path, noc_images: int | None = None,
                        device: str | None = None, modes=("model-only", "refine")) -> dict:
    """AP of the checkpoint's predictions on `data_dir` and NoC per mode on its first
    `noc_images` images."""
    dataset, schema = ground_truth(data_dir)
    started = time.perf_counter()
    results = predict_folder(checkpoint, data_dir, device=device, progress=False)
    ap = evaluate_ap(dataset, results, schema)
    emit({"kind": "ap", "checkpoint": str(checkpoint), **ap.to_dict(),
          "seconds": round(time.perf_counter() - started, 1)})
    subset = first_images(dataset, noc_images)
    nocs = {mode: measure_noc(subset, checkpoint_editors(checkpoint, data_dir, subset, mode,
                                                         schema), mode, schema, "checkpoint")
            for mode in modes}
    return {"ap": ap.stats["AP"], "ap_stats": ap.stats, "noc": nocs}


def evaluate_predictions(predictions: Path, data_dir: Path, label: str) -> dict:
    """AP and model-only NoC of another detector's COCO results on `data_dir`."""
    dataset, schema = ground_truth(data_dir)
    results, _ = load_detections(predictions)
    ap = evaluate_ap(dataset, results, schema)
    emit({"kind": "ap", "source": label, **ap.to_dict()})
    noc = measure_noc(dataset, prediction_editors(results, dataset, schema), "model-only",
                      schema, label)
    return {"ap": ap.stats["AP"], "noc": {"model-only": noc}}
