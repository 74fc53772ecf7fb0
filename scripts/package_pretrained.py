"""Package a trained checkpoint as one of clickpose's named start models.

    .venv/bin/python scripts/package_pretrained.py --checkpoint RUN/last --name NAME \
        --trained-by "python bench/train_synthetic.py --threads 2 --out RUN" \
        [--val work/bench_synth/photo-v1.1-n200-s1001-256px] [--noc-images 200]

Writes `clickpose/weights/NAME/` (weights in half precision, config.json), then measures
the packaged weights themselves, as they will be loaded, on --val: OKS AP (pycocotools)
and NoC@85/90/95 in model-only and refine modes on its first --noc-images images. The
figures, the training command and the source weights' SHA-256 go into the package's
config.json ('metrics'), which `clickpose pretrained` prints. An earlier package of that
name is replaced only once the new one is complete.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluation import emit, evaluate_checkpoint
from bench.latency import machine
from clickpose.model.checkpoint import (
    WEIGHTS_FILE,
    checkpoint_folder,
    load_model,
    read_checkpoint_config,
    save_checkpoint,
)
from clickpose.model.pretrained import PRETRAINED_DIR


def write_package(model, config: dict, folder: Path, metrics: dict) -> None:
    """`model` (the source checkpoint's, in half precision) with the source's training record."""
    save_checkpoint(folder, model, metrics=metrics, training=config.get("training"),
                    dataset=config.get("dataset"))


def measured(folder: Path, val: Path, noc_images: int) -> dict:
    """AP and NoC of the packaged weights on `val`."""
    result = evaluate_checkpoint(folder, val, noc_images)
    return {"val_data": str(val), "noc_images": noc_images, "ap": result["ap_stats"],
            "noc": result["noc"],
            "machine": machine("cpu")}


def measure_options(parser: argparse.ArgumentParser, argv: list[str] | None
                    ) -> argparse.Namespace:
    """Add the options of `measured` (--val, --noc-images, --threads), parse `argv` and set
    torch's threads."""
    parser.add_argument("--val", type=Path, required=True, help="data to measure it on")
    parser.add_argument("--noc-images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--trained-by", required=True, help="the command that trained it")
    args = measure_options(parser, argv)

    source = checkpoint_folder(args.checkpoint)
    record = {"trained_by": args.trained_by, "source_weights_sha256": hashlib.sha256(
        (source / WEIGHTS_FILE).read_bytes()).hexdigest()}
    PRETRAINED_DIR.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{args.name}-", dir=PRETRAINED_DIR))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the package from other users
    model, config = load_model(source).half(), read_checkpoint_config(source)
    try:
        write_package(model, config, staging, record)
        record["measured"] = measured(staging, args.val, args.noc_images)
        write_package(model, config, staging, record)  # same weights, config with the figures
        target = PRETRAINED_DIR / args.name
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    emit({"kind": "packaged", "name": args.name, "folder": str(target), **record})
    return target


if __name__ == "__main__":
    main()
