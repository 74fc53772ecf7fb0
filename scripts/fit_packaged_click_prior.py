"""Give a packaged start model its click prior, and measure it again with it.

    .venv/bin/python scripts/fit_packaged_click_prior.py --name NAME --data TRAIN_DIR \
        [--images 300] [--val work/bench_synth/photo-v1.1-n200-s1001-256px] [--noc-images 200]

Fits the click prior (clickpose.train.click_prior_fit) of `clickpose/weights/NAME` on the
images it was trained on, measures the package with it on --val as
scripts/package_pretrained.py does, and stores prior and figures in the package's
config.json ('click_prior'; 'metrics.measured', the figures before it under
'metrics.click_prior.measured_without'). The weights, the training command and the source
weights' SHA-256 stay as they were. The package changes only once everything is measured.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluation import emit
from clickpose.io import atomic_write_json
from clickpose.model.checkpoint import (
    CONFIG_FILE,
    attach_click_prior,
    load_model,
    read_checkpoint_config,
)
from clickpose.model.pretrained import pretrained_folder
from clickpose.train.click_prior_fit import fit_click_prior
from clickpose.train.defaults import CLICK_PRIOR_IMAGES
from scripts.package_pretrained import measure_options, measured


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--data", type=Path, required=True, help="its training images")
    parser.add_argument("--images", type=int, default=CLICK_PRIOR_IMAGES)
    args = measure_options(parser, argv)

    folder = pretrained_folder(args.name)
    config = read_checkpoint_config(folder)
    prior = fit_click_prior(load_model(folder), args.data, args.images)
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(shutil.copytree(folder, Path(scratch) / args.name))
        attach_click_prior(copy, prior)
        figures = measured(copy, args.val, args.noc_images)
        with_prior = read_checkpoint_config(copy)  # the package's config, the prior attached
    metrics = dict(config.get("metrics") or {})
    metrics["click_prior"] = {
        "data": str(args.data), "images": args.images,
        "persons_labelled": prior.persons_labelled, "persons_predicted": prior.persons_predicted,
        "fitted_by": f"python scripts/fit_packaged_click_prior.py --name {args.name} "
                     f"--data {args.data} --images {args.images}",
        # A package fitted before keeps the figures of its weights without any prior.
        "measured_without": (metrics.get("click_prior") or {}).get("measured_without")
        or metrics.get("measured")}
    metrics["measured"] = figures
    atomic_write_json(folder / CONFIG_FILE, {**with_prior, "metrics": metrics}, indent=2)
    record = {"kind": "click_prior", "name": args.name, "folder": str(folder),
              "noc": figures["noc"]}
    emit(record)
    return record


if __name__ == "__main__":
    main()
