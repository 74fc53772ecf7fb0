"""Train a preset (default `lite0`) on the real COCO images of coco-dev, then measure AP and NoC
beside another detector's predictions on the same images.

    .venv/bin/python bench/train_coco_dev.py [--data ../shared/data/coco-dev] [--minutes 30]
        [--preset lite0] [--init CKPT] [--lr 2e-4] [--batch-size 2] [--epochs 40]
        [--peer ../shared/data/peer-predictions/movenet-coco-dev.json]
        [--out work/bench_runs/train_coco_dev] [--threads N] [--device cpu|cuda]
        [--image-size PX] [--max-size PX] [--cache-backbone-features] [--seed 0]

coco-dev is a development set (about a hundred images): the model is trained and measured
on the same images, so its figures say how far the network gets in the time given, not how
it generalises; the peer detector never saw these images. Prints JSON lines: the machine,
each training epoch, AP and NoC (model-only and refine) of the checkpoint, AP and
model-only NoC of the peer predictions, and a summary.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluation import emit, evaluate_checkpoint, evaluate_predictions
from bench.latency import machine
from bench.training_run import run_training
from clickpose.model.checkpoint import read_checkpoint_config
from clickpose.train.loop import TrainConfig, default_cpu_threads

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "coco-dev")
    parser.add_argument("--peer", type=Path,
                        default=SHARED / "peer-predictions" / "movenet-coco-dev.json",
                        help="COCO results of another detector on --data ('' to skip)")
    parser.add_argument("--preset", default="lite0")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this checkpoint (e.g. a synthetic pre-training run)")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--epochs", type=int, default=40,
                        help="nominal schedule length; the time limit usually ends it first")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--noc-images", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("work/bench_runs/train_coco_dev"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--image-size", type=int, default=None,
                        help="shorter side of the input (default: the preset's or --init's)")
    parser.add_argument("--max-size", type=int, default=None,
                        help="longer side at most (default: 1.5 x --image-size when given, "
                             "else the preset's or --init's)")
    parser.add_argument("--cache-backbone-features", action="store_true",
                        help="keep a frozen backbone's features between epochs (tiny; flip "
                             "is then the only augmentation)")
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed (initialisation, batch order, augmentation, noise)")
    parser.add_argument("--skip-train", action="store_true",
                        help="evaluate the run already in --out")
    return parser.parse_args(argv)


def longer_side_limit(args: argparse.Namespace) -> int | None:
    """--max-size, or 1.5 x the shorter side (tiny's and lite0's ratio) when only --image-size
    is given (else a larger shorter side would be capped by the checkpoint's own max_size)."""
    if args.max_size is not None or args.image_size is None:
        return args.max_size
    return round(args.image_size * 1.5)


def training_config(args: argparse.Namespace, threads: int) -> TrainConfig:
    return TrainConfig(data=args.data, out=args.out, preset=None if args.init else args.preset,
                       init=args.init, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, workers=args.workers, max_minutes=args.minutes,
                       threads=threads, device=args.device, progress=False,
                       image_size=args.image_size, max_size=longer_side_limit(args),
                       cache_backbone_features=args.cache_backbone_features, seed=args.seed)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not (args.data / "annotations.json").is_file():
        raise SystemExit(f"{args.data}: no annotations.json; pass --data with a COCO "
                         "person_keypoints folder (annotations.json + images/)")
    threads = args.threads or default_cpu_threads(args.workers)
    torch.set_num_threads(threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    emit({**machine(device), "torch_threads": threads, "workers": args.workers, "seed": args.seed,
          "data": str(args.data), "evaluated_on": "the training images"})
    started = time.perf_counter()
    if not args.skip_train:
        run_training(training_config(args, threads))
    ours = evaluate_checkpoint(args.out / "last", args.data, args.noc_images, args.device)
    trained = read_checkpoint_config(args.out / "last")["model"]
    result = {"kind": "summary", "preset": trained["preset"], "init": str(args.init or ""),
              "image_size": trained["image_size"], "AP": ours["ap"],
              "NoC@90_model_only": ours["noc"]["model-only"]["NoC@90"],
              "NoC@90_refine": ours["noc"]["refine"]["NoC@90"]}
    if args.peer and str(args.peer) and Path(args.peer).is_file():
        peer = evaluate_predictions(args.peer, args.data, args.peer.stem)
        result.update({"peer": args.peer.stem, "peer_AP": peer["ap"],
                       "peer_NoC@90_model_only": peer["noc"]["model-only"]["NoC@90"]})
    result.update({"total_seconds": round(time.perf_counter() - started, 1), "pid": os.getpid()})
    emit(result)
    return result


if __name__ == "__main__":
    main()
