"""Data-parallel training on this machine's CPU: `clickpose train` as one process of N threads
against torchrun with N processes of one thread, the same global batch, in one run.

    python bench/data_parallel.py [--processes 2] [--repeats 2] [--epochs 3]

Each arm trains the `tiny` preset on the same 200 synthetic `photo` images with its frozen
backbone's features cached (as bench/train_synthetic.py trains it); the figure is the
images/s of the epochs after the first (which fills the cache). The arms alternate, so a
busy hour of a shared machine weighs on both. Prints JSON lines: the machine, one line per
arm and repeat, and a summary with the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluation import emit
from bench.latency import machine
from bench.synthetic_sets import CACHE, TRAIN_SEED, cached_dataset


def clickpose_command() -> str:
    found = shutil.which("clickpose", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("the clickpose command is not installed beside this Python; "
                         "run `make venv` first")
    return found


def arm_command(processes: int, threads: int, data: Path, out: Path, epochs: int,
                batch_size: int, image_size: int) -> tuple[list[str], dict]:
    """The command line and environment of one arm: `processes` x `threads`, each process
    with its share of the global `batch_size`."""
    train = ["train", "--data", str(data), "--out", str(out), "--epochs", str(epochs),
             "--batch-size", str(batch_size // processes), "--workers", "0", "--lr", "1.6e-3",
             "--dn-groups", "1", "--cache-backbone-features", "--device", "cpu",
             "--image-size", str(image_size)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if processes == 1:
        return [clickpose_command(), *train], env
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(processes), "--no-python", clickpose_command(), *train], env


def warm_images_per_s(run: Path) -> float:
    """Images/s of the epochs after the first (the feature cache is full by then)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    warm = [r["train"] for r in records[1:]]
    return sum(t["images"] for t in warm) / sum(t["seconds"] for t in warm)


def significant(value: float, digits: int = 4) -> float:
    """Round to significant figures: a loaded machine's 0.4 images/s keeps its precision."""
    return float(f"{value:.{digits}g}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="the first fills the cache")
    parser.add_argument("--batch-size", type=int, default=8, help="global: split over processes")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256, help="synthetic image size")
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args(argv)
    if args.epochs < 2 or args.batch_size % args.processes:
        raise SystemExit("--epochs must be at least 2 and --batch-size a multiple of --processes")
    emit(machine("cpu"))
    data = cached_dataset(args.cache, args.images, TRAIN_SEED, args.size)
    arms = {"1_process": (1, args.processes), f"{args.processes}_processes": (args.processes, 1)}
    speeds: dict[str, list[float]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory(prefix="data-parallel-") as tmp:
        for repeat in range(args.repeats):
            for name, (processes, threads) in arms.items():
                out = Path(tmp) / f"{name}-{repeat}"
                command, env = arm_command(processes, threads, data, out, args.epochs,
                                           args.batch_size, args.size)
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"the {name} arm failed:\n{done.stderr[-3000:]}")
                speeds[name].append(warm_images_per_s(out))
                emit({"kind": "arm", "arm": name, "processes": processes,
                      "threads_each": threads, "repeat": repeat,
                      "images_per_s": significant(speeds[name][-1])})
    one, many = (statistics.median(v) for v in speeds.values())
    summary = {"kind": "summary", "global_batch": args.batch_size,
               "median_images_per_s": {k: significant(statistics.median(v))
                                       for k, v in speeds.items()},
               "processes_over_one_process": round(many / one, 3)}
    emit(summary)
    return summary


if __name__ == "__main__":
    main()
