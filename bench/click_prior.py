"""What the click prior buys in refine mode: the same checkpoint and images with and without it.

    .venv/bin/python bench/click_prior.py [--checkpoint tiny-synthetic] [--fit-data DIR]
        [--fit-images 300] [--data DIR] [--images N] [--threads 2]

Fits the checkpoint's click prior (clickpose.train.click_prior_fit) on --fit-data (default:
the synthetic bench's 2,000 training images, seed 1, the packaged `tiny-synthetic`'s), in
memory, then runs NoC on --data (default: the bench's 200 val images, seed 1001) in
model-only mode and in refine mode without and with the prior, one after the other in one
process. Prints JSON lines: the machine, the fit (persons, seconds), each NoC run, and a
summary with refine / model-only at each target for both arms.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluation import NOC_TARGETS, emit, first_images, ground_truth, measure_noc
from bench.latency import machine
from bench.synthetic_sets import train_images, val_images
from clickpose.evaluate.sources import model_editors
from clickpose.model.checkpoint import load_model
from clickpose.train.click_prior_fit import fit_click_prior
from clickpose.train.defaults import CLICK_PRIOR_IMAGES


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="tiny-synthetic")
    parser.add_argument("--fit-data", type=Path, default=None,
                        help="default: the synthetic bench's training images (seed 1)")
    parser.add_argument("--fit-images", type=int, default=CLICK_PRIOR_IMAGES)
    parser.add_argument("--data", type=Path, default=None,
                        help="default: the synthetic bench's val images (seed 1001)")
    parser.add_argument("--images", type=int, default=None, help="the first N of --data")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    emit(machine("cpu"))
    fit_data = args.fit_data or train_images()
    data = args.data or val_images()

    model = load_model(args.checkpoint)
    started = time.perf_counter()
    model.click_prior = fit_click_prior(model, fit_data, args.fit_images)
    emit({"kind": "fit", "checkpoint": str(args.checkpoint), "data": str(fit_data),
          "images": args.fit_images, "persons_labelled": model.click_prior.persons_labelled,
          "persons_predicted": model.click_prior.persons_predicted,
          "seconds": round(time.perf_counter() - started, 1)})

    dataset, schema = ground_truth(data)
    dataset = first_images(dataset, args.images)

    def editors(mode: str, use_click_prior: bool):
        return model_editors(model, data, dataset, mode, use_click_prior=use_click_prior)

    arms = {"model-only": measure_noc(dataset, editors("model-only", False), "model-only",
                                      schema, "model-only"),
            "refine": measure_noc(dataset, editors("refine", False), "refine", schema,
                                  "refine without click prior"),
            "refine+prior": measure_noc(dataset, editors("refine", True), "refine", schema,
                                        "refine with click prior")}

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 3) if b else None

    base = arms["model-only"]
    summary = {"kind": "summary", "data": str(data), "n_images": base["n_images"]}
    for target in NOC_TARGETS:
        key = f"NoC@{target}"
        for arm in ("refine", "refine+prior"):
            summary[f"{arm}/model-only@{target}"] = ratio(arms[arm][key], base[key])
        summary[f"prior/no-prior@{target}"] = ratio(arms["refine+prior"][key],
                                                    arms["refine"][key])
    emit(summary)
    return summary


if __name__ == "__main__":
    main()
