"""One network, predicting with other options: AP and NoC per variant of its config.

    .venv/bin/python bench/prediction_options.py --checkpoint RUN/last
        [--variant NAME=VALUE[;NAME=VALUE]] ... [--data DIR] [--noc-images N]
        [--modes model-only,refine] [--threads 2]

Each --variant sets ModelConfig fields that change only how the model predicts
(e.g. `heatmap_recentre=0.1`, `keypoint_passes=2`) in a copy of the checkpoint's config, the
weights untouched; the checkpoint as saved is always the first variant. Every variant is
evaluated as the synthetic bench evaluates its runs (AP of `clickpose predict`, NoC per
mode on the first --noc-images). Default data: the synthetic bench's tuning images (val seed
1005), where such options are chosen. Prints JSON lines: the machine, each evaluation's
figures (the AP line's seconds include the prediction), and a summary per variant (AP,
NoC@90 per mode, refine / model-only).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluation import emit, evaluate_checkpoint
from bench.latency import machine
from bench.model_options import parse_model_option
from bench.synthetic_sets import tuning_images
from clickpose.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, checkpoint_folder


def with_options(checkpoint: Path, options: dict, folder: Path) -> Path:
    """A view of `checkpoint` in `folder` whose config has `options` set; the weights are
    linked, not copied."""
    source = checkpoint_folder(checkpoint)
    config = json.loads((source / CONFIG_FILE).read_text())
    config["model"].update(options)
    folder.mkdir(parents=True)
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    (folder / WEIGHTS_FILE).symlink_to((source / WEIGHTS_FILE).resolve())
    return folder


def parse_variant(text: str) -> dict:
    """'a=1;b=true' -> {'a': 1, 'b': True} (each a ModelConfig field, its value JSON)."""
    return dict(parse_model_option(part, "--variant") for part in text.split(";") if part)


def summarize(checkpoint: Path, data: Path, figures: dict, modes: tuple[str, ...]) -> dict:
    noc90 = {mode: figures["noc"][mode]["NoC@90"] for mode in modes}
    summary = {"kind": "summary", "checkpoint": str(checkpoint), "data": str(data),
               "ap": round(figures["ap"], 4), "ap50": round(figures["ap_stats"]["AP50"], 4),
               "ap75": round(figures["ap_stats"]["AP75"], 4),
               **{f"noc90_{mode}": value for mode, value in noc90.items()}}
    if {"model-only", "refine"} <= set(modes):
        summary["refine_over_model_only_90"] = round(noc90["refine"] / noc90["model-only"], 3)
    return summary


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """The checkpoint and how each variant of it is evaluated."""
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None,
                        help="default: the synthetic bench's tuning images (val seed 1005)")
    parser.add_argument("--noc-images", type=int, default=200)
    parser.add_argument("--modes", default="model-only,refine")
    parser.add_argument("--threads", type=int, default=2)


def evaluate_variants(args: argparse.Namespace, variants: list[dict],
                      describe: Callable[[dict], dict]) -> list[dict]:
    """Each variant's summary (with `describe(options)` in it), printed as it comes."""
    modes = tuple(args.modes.split(","))
    torch.set_num_threads(args.threads)
    emit(machine("cpu"))
    data = args.data or tuning_images()
    summaries = []
    with tempfile.TemporaryDirectory() as scratch:
        for i, options in enumerate(variants):
            view = with_options(args.checkpoint, options, Path(scratch) / f"variant{i}")
            figures = evaluate_checkpoint(view, data, args.noc_images, "cpu", modes)
            summaries.append({**summarize(args.checkpoint, data, figures, modes),
                              **describe(options)})
            emit(summaries[-1])
    return summaries


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_evaluation_arguments(parser)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=VALUE[;...]")
    args = parser.parse_args(argv)
    variants = [{}] + [parse_variant(text) for text in args.variant]
    return evaluate_variants(args, variants, lambda options: {"options": options})


if __name__ == "__main__":
    main()
