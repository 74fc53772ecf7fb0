"""A fine-tune's click prior: its own fit, the prior it inherited, or the two pooled.

    .venv/bin/python bench/click_prior_pooling.py --checkpoint C --fit-data DIR --data DIR
        [--inherited tiny-synthetic] [--caps 100,300,1000] [--fit-images 1000] [--images N]
        [--threads 2]

A checkpoint fine-tuned on few labels (a campaign round's, a model fitted on coco-dev, one
adapted to new keypoints) is measured in refine mode on --data, one process, with: no prior;
the statistics of its training labels (--fit-data) alone, what `clickpose train` kept
before; the same pooled with a prior that says nothing, what training keeps when there is
nothing to inherit (clickpose.train.click_prior_fit.regularized); and, unless the
checkpoint has more keypoints than --inherited (the checkpoint it was fine-tuned from), the
inherited prior alone and the two pooled, the inherited prior counted as at most each of
--caps persons (training pools with CLICK_PRIOR_INHERITED_PERSONS). Prints JSON lines: the machine, the fit, each NoC
run and a summary with NoC@85/90/95 per arm.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arguments import parse_counts
from bench.evaluation import NOC_TARGETS, emit, first_images, ground_truth, measure_noc
from bench.latency import machine
from clickpose.evaluate.sources import model_editors
from clickpose.model.checkpoint import load_model, read_click_prior
from clickpose.model.click_prior import pooled
from clickpose.train.click_prior_fit import regularized, statistics_of
from clickpose.train.defaults import CLICK_PRIOR_IMAGES, CLICK_PRIOR_INHERITED_PERSONS


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="the fine-tuned checkpoint")
    parser.add_argument("--fit-data", type=Path, required=True,
                        help="the labels it was fine-tuned on")
    parser.add_argument("--data", type=Path, required=True, help="the images to measure on")
    parser.add_argument("--inherited", default="tiny-synthetic",
                        help="the checkpoint it was fine-tuned from (its click prior)")
    parser.add_argument("--caps", default=f"100,{CLICK_PRIOR_INHERITED_PERSONS},1000")
    parser.add_argument("--fit-images", type=int, default=CLICK_PRIOR_IMAGES)
    parser.add_argument("--images", type=int, default=None, help="the first N of --data")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    caps = parse_counts(parser, "--caps", args.caps, "person counts", "100,300")
    inherited = read_click_prior(args.inherited)
    if inherited is None:
        parser.error(f"--inherited {args.inherited}: that checkpoint has no click prior")
    torch.set_num_threads(args.threads)
    emit(machine("cpu"))

    model = load_model(args.checkpoint)
    started = time.perf_counter()
    own = statistics_of(model, args.fit_data, args.fit_images)
    emit({"kind": "fit", "checkpoint": str(args.checkpoint), "data": str(args.fit_data),
          "persons_labelled": own.persons_labelled, "persons_predicted": own.persons_predicted,
          "inherited": str(args.inherited), "inherited_persons": inherited.persons_labelled,
          "seconds": round(time.perf_counter() - started, 1)})

    arms = {"none": None, "own": own, "own_regularized": regularized(own, None)}
    if inherited.num_keypoints == own.num_keypoints:  # not a model adapted to new keypoints
        arms.update({"inherited": inherited,
                     **{f"pooled_{cap}": pooled(own, inherited, cap) for cap in caps}})
    dataset, schema = ground_truth(args.data)
    dataset = first_images(dataset, args.images)
    summary = {"kind": "summary", "checkpoint": str(args.checkpoint), "data": str(args.data)}
    for arm, prior in arms.items():
        model.click_prior = prior
        result = measure_noc(dataset, model_editors(model, args.data, dataset, "refine"),
                             "refine", schema, f"click prior: {arm}")
        summary["n_images"] = result["n_images"]  # those with annotated persons
        summary[arm] = {f"NoC@{t}": result[f"NoC@{t}"] for t in NOC_TARGETS}
    emit(summary)
    return summary


if __name__ == "__main__":
    main()
