"""Where a network's keypoint AP goes: its errors by kind, and the AP with each kind set right.

    .venv/bin/python bench/error_diagnosis.py (--checkpoint RUN/last | --predictions P.json)
        [--data DIR] [--threads 2]

The classes of Ronchi and Perona's error diagnosis of multi-person pose estimation (ICCV
2017). Each prediction, in the order of its score, is matched to the ground-truth person of
its image it fits best (OKS above 0.1) among those still free; each labelled keypoint of a
matched pair is then, by its OKS term: `good` (0.85 or more), `jitter` (0.5 to 0.85),
`inversion` (under 0.5, but 0.5 or more at its left/right partner's place), `swap` (under
0.5, but 0.5 or more at the same keypoint of another person of the image) or `miss`. The AP
(pycocotools, through clickpose.evaluate) is taken as predicted, with each kind's keypoints
moved onto the ground truth in turn and with all large errors moved, and with every
prediction scored by its true OKS (what a perfect ranking would give). Default data: the
synthetic bench's val images (seed 1001). Prints JSON lines: the machine, the classes
(counts, share of the labelled keypoints of matched persons, misses per keypoint type and
their median distance in person scales), then one line per AP.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluation import emit, ground_truth
from bench.latency import machine
from bench.synthetic_sets import val_images
from clickpose.evaluate.error_classes import diagnose
from clickpose.evaluate.inputs import load_detections
from clickpose.train.predict import predict_folder


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path)
    source.add_argument("--predictions", type=Path, help="COCO results of any detector")
    parser.add_argument("--data", type=Path, default=None,
                        help="default: the synthetic bench's val images (seed 1001)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    emit(machine("cpu"))
    data = args.data or val_images()
    dataset, schema = ground_truth(data)
    if args.checkpoint is not None:
        results = predict_folder(args.checkpoint, data, device="cpu", progress=False)
    else:
        results = load_detections(args.predictions)[0]
    lines = diagnose(results, dataset, schema)
    source_name = str(args.checkpoint or args.predictions)
    for line in lines:
        emit({"source": source_name, "data": str(data), **line})
    return lines


if __name__ == "__main__":
    main()
