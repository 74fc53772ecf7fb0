"""How many keypoint-decoder passes a prediction should run: one network, AP and NoC per count.

    .venv/bin/python bench/keypoint_passes.py --checkpoint RUN/last [--passes 1,2,3]
        [--data DIR] [--noc-images N] [--modes model-only,refine] [--threads 2]

A prediction decodes the persons `keypoint_passes` times, each pass from the last one's
keypoints (clickpose.model.clickpose_model.ClickPose.predict_keypoints); a session's clicks
re-run one pass, from the last pass's start. For each count the checkpoint is evaluated as
the synthetic bench evaluates its runs (AP of `clickpose predict`, NoC per mode on the first
--noc-images), the weights untouched and only `keypoint_passes` changed in a copy of its
config. Default data:
the synthetic bench's tuning images (val seed 1005), where the count was chosen. Prints JSON
lines: the machine, each evaluation's figures, and a summary per count (AP, NoC@90 per mode,
refine / model-only).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arguments import parse_counts
from bench.evaluation import emit, evaluate_checkpoint
from bench.latency import machine
from bench.prediction_options import summarize, with_options
from bench.synthetic_sets import tuning_images


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--passes", default="1,2,3")
    parser.add_argument("--data", type=Path, default=None,
                        help="default: the synthetic bench's tuning images (val seed 1005)")
    parser.add_argument("--noc-images", type=int, default=200)
    parser.add_argument("--modes", default="model-only,refine")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    counts = parse_counts(parser, "--passes", args.passes, "counts", "1,2,3")
    modes = tuple(args.modes.split(","))
    torch.set_num_threads(args.threads)
    emit(machine("cpu"))
    data = args.data or tuning_images()

    summaries = []
    with tempfile.TemporaryDirectory() as scratch:
        for passes in counts:
            view = with_options(args.checkpoint, {"keypoint_passes": passes},
                                Path(scratch) / f"passes{passes}")
            figures = evaluate_checkpoint(view, data, args.noc_images, "cpu", modes)
            summary = {**summarize(args.checkpoint, data, figures, modes),
                       "keypoint_passes": passes}
            emit(summary)
            summaries.append(summary)
    return summaries


if __name__ == "__main__":
    main()
