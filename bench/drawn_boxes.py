"""How good a pose the model proposes for a person the annotator draws a box around.

    .venv/bin/python bench/drawn_boxes.py --checkpoint RUN/last [--data DIR] [--images N]
        [--threads N] [--device cpu|cuda]

For every image of --data (default: the synthetic bench's 200 val images), a session is
opened with no persons and every ground-truth person is drawn from its box
(`InteractiveSession.add_person`), once per proposal setting:

  heatmaps-1-pass     the pose the heatmaps give for the box, decoded once
  heatmaps-2-passes   the same, decoded twice (each pass from the last)
  candidate-or-2      the pose of the detection candidate that overlaps the box by IoU 0.5
                      or more, decoded once; else heatmaps-2-passes (the session's default)

Prints JSON lines: the machine, then per setting the OKS AP of the proposals (every person
scored 1, so AP says how many proposals are close, not how they rank), the share of boxes
that adopted a candidate, and the median milliseconds of one add_person.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluation import emit, first_images, ground_truth
from bench.latency import machine
from bench.synthetic_sets import val_images
from clickpose.evaluate import evaluate_ap
from clickpose.evaluate.matching import TargetPersons
from clickpose.model.checkpoint import load_model
from clickpose.poses import Poses
from clickpose.train.loop import default_cpu_threads

SETTINGS = {
    "heatmaps-1-pass": {"adopt_candidate_iou": None, "proposal_passes": 1},
    "heatmaps-2-passes": {"adopt_candidate_iou": None, "proposal_passes": 2},
    "candidate-or-2": {},  # the session's defaults
}


def draw_every_person(model, image_path: Path, targets: TargetPersons, options: dict
                      ) -> tuple[Poses, list[float], int]:
    """Draw each target person's box in a session without persons; returns the poses,
    the milliseconds of each add_person and how many adopted a detection candidate."""
    session = model.session(image_path, initial_poses=Poses.empty(model.schema.num_keypoints),
                            **options)
    times = []
    for box in targets.boxes:
        started = time.perf_counter()
        session.add_person(box)
        times.append(1000 * (time.perf_counter() - started))
    adopted = sum(session.candidate(i) is not None for i in range(session.num_persons))
    return session.poses, times, adopted


def proposals_as_results(poses: Poses, image_id: int) -> list[dict]:
    results = poses.to_coco_results(image_id, category_id=1)
    for r in results:
        r["score"] = 1.0
    return results


def measure(model, dataset: dict, folder: Path, options: dict, limit: int | None) -> dict:
    schema = model.schema
    by_image: dict[int, list[dict]] = {}
    for a in dataset["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    subset = first_images(dataset, limit)
    results, times, adopted, drawn = [], [], 0, 0
    for image in subset["images"]:
        targets = TargetPersons.from_annotations(by_image.get(image["id"], []), image["width"],
                                                 image["height"], schema.num_keypoints)
        if targets.num_persons == 0:
            continue
        poses, ms, used = draw_every_person(model, folder / "images" / image["file_name"],
                                            targets, options)
        results += proposals_as_results(poses, image["id"])
        times += ms
        adopted += used
        drawn += targets.num_persons
    ap = evaluate_ap(subset, results, schema)
    return {"AP": ap.stats["AP"], "AP50": ap.stats["AP50"], "AP75": ap.stats["AP75"],
            "boxes_drawn": drawn, "adopted_candidate": adopted / max(drawn, 1),
            "add_person_ms_median": statistics.median(times) if times else None}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None,
                        help="default: the synthetic bench's val images (seed 1001)")
    parser.add_argument("--images", type=int, default=None, help="the first N images only")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    args.data = args.data or val_images()
    if not (args.data / "annotations.json").is_file():
        raise SystemExit(f"{args.data}: no annotations.json; pass --data with a COCO "
                         "person_keypoints folder")
    torch.set_num_threads(args.threads or default_cpu_threads(0))
    rows = [{**machine(args.device), "checkpoint": str(args.checkpoint), "data": str(args.data),
             "pid": os.getpid()}]
    emit(rows[0])
    dataset, schema = ground_truth(args.data)
    model = load_model(args.checkpoint, args.device, schema=schema)
    for name, options in SETTINGS.items():
        figures = measure(model, dataset, args.data, options, args.images)
        rows.append({"kind": "drawn_boxes", "setting": name,
                     **{k: (round(v, 4) if isinstance(v, float) else v)
                        for k, v in figures.items()}})
        emit(rows[-1])
    return rows


if __name__ == "__main__":
    main()
