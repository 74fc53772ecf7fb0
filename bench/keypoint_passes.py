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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arguments import parse_counts
from bench.prediction_options import add_evaluation_arguments, evaluate_variants


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_evaluation_arguments(parser)
    parser.add_argument("--passes", default="1,2,3")
    args = parser.parse_args(argv)
    counts = parse_counts(parser, "--passes", args.passes, "counts", "1,2,3")
    return evaluate_variants(args, [{"keypoint_passes": n} for n in counts],
                             lambda options: {"keypoint_passes": options["keypoint_passes"]})


if __name__ == "__main__":
    main()
