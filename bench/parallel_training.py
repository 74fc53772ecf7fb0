"""Training speed of one process with several torch threads against several processes.

    .venv/bin/python bench/parallel_training.py [--arms 1x2,2x1] [--repeats 2]
        [--images 192] [--epochs 3] [--batch-size 8] [--cache work/bench_synth]

Each arm (PROCESSESxTHREADS) trains the bench's `tiny` setup (frozen backbone, features
cached, batch 8, 1 denoising group) on the same synthetic `photo` images through
`clickpose.train.loop.train`; the first epoch fills the feature cache and is not counted,
the images/s of the later epochs are. The arms alternate (A B A B ...) so that a slower
minute of the machine falls on both. Prints JSON lines: the machine, each run, and a
summary with each arm's mean images/s and its ratio to the first arm.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluation import emit
from bench.latency import machine
from bench.train_synthetic import cached_dataset
from clickpose.train.loop import TrainConfig, train

DATA_SEED = 3  # other scenes than the synthetic bench's train (1) and val (1001) images


def parse_arm(text: str) -> tuple[int, int]:
    """'2x1' -> (2 processes, 1 thread each)."""
    try:
        processes, threads = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"arm '{text}' is not PROCESSESxTHREADS (e.g. 1x2 or 2x1)") from None
    if processes < 1 or threads < 1:
        raise argparse.ArgumentTypeError(f"arm '{text}': processes and threads must be >= 1")
    return processes, threads


def run_arm(data: Path, out: Path, processes: int, threads: int, args) -> dict:
    summary = train(TrainConfig(
        data=data, out=out, preset="tiny", epochs=args.epochs, batch_size=args.batch_size,
        lr=1.6e-3, dn_groups=1, workers=0, threads=threads, processes=processes,
        cache_backbone_features=True, progress=False), log=lambda line: None)
    timed = summary["history"][1:]  # the first epoch fills the feature cache
    images = sum(r["train"]["images"] for r in timed)
    seconds = sum(r["train"]["seconds"] for r in timed)
    return {"kind": "run", "processes": processes, "threads": threads,
            "images": images, "seconds": round(seconds, 2),
            "images_per_s": round(images / seconds, 2),
            "final_loss": round(summary["history"][-1]["train"]["losses"]["loss"], 3)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", type=lambda s: [parse_arm(a) for a in s.split(",")],
                        default=[(1, 2), (2, 1)], help="PROCESSESxTHREADS,... (first = base)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--epochs", type=int, default=3, help="the first is not timed")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="synthetic image size")
    parser.add_argument("--cache", type=Path, default=Path("work/bench_synth"))
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first one is not timed")

    emit({**machine("cpu"), "arms": [f"{p}x{t}" for p, t in args.arms]})
    data = cached_dataset(args.cache, args.images, DATA_SEED, args.size)
    speeds: dict[str, list[float]] = {f"{p}x{t}": [] for p, t in args.arms}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for i, (processes, threads) in enumerate(args.arms):
                record = run_arm(data, Path(tmp) / f"r{repeat}a{i}", processes, threads, args)
                emit({**record, "repeat": repeat})
                speeds[f"{processes}x{threads}"].append(record["images_per_s"])
    base = mean(next(iter(speeds.values())))
    summary = {"kind": "summary", "images": args.images, "batch_size": args.batch_size,
               "images_per_s": {arm: round(mean(v), 2) for arm, v in speeds.items()},
               "ratio_to_first": {arm: round(mean(v) / base, 3) for arm, v in speeds.items()}}
    emit(summary)
    return summary


if __name__ == "__main__":
    main()
