"""A model option against its absence, from one trained start: paired fine-tunes.

    .venv/bin/python bench/option_ab.py --init RUN/last --option NAME=VALUE
        [--data DIR] [--val DIR] [--minutes 7] [--lr 8e-4] [--seeds 0 1]
        [--noc-images 200] [--batch-size 8] [--threads N] [--out work/bench_runs/option_ab]

A 30-minute run of bench/train_synthetic.py from scratch moves by its random stream alone
about as much as most options move it, so one run per option cannot tell them apart. Here
both arms start from the same checkpoint (--init) and, per seed, draw the same batches:
one fine-tunes with the option (a ModelConfig field, e.g. max_humans=6),
the other as the checkpoint is, each for --minutes with the bench's settings (cached
backbone features, 1 denoising group, the lr dropped tenfold at 80 %). Tensors the option
adds start at their initialisation (--init loads what matches). Each arm's last checkpoint
is measured on --val: OKS AP, and NoC at 85/90/95 in `refine` and `model-only` modes on
its first --noc-images images. Prints JSON lines: the machine, each arm's training and
figures, and a summary with each seed's refine NoC@90 difference (with - without) and
their mean.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluation import emit, evaluate_checkpoint
from bench.latency import machine
from bench.model_options import parse_model_option
from bench.synthetic_sets import train_images, tuning_images
from bench.training_run import images_seen, run_training
from clickpose.model.checkpoint import read_checkpoint_config
from clickpose.model.presets import ModelConfig
from clickpose.train.loop import TrainConfig, default_cpu_threads


def parse_option(text: str, init: Path) -> tuple[str, object]:
    """'name=value' (value in JSON: true, 0.5, "x") -> (name, value), checked against
    ModelConfig and against the --init checkpoint, which must not have it already."""
    name, value = parse_model_option(text, "--option")
    current = read_checkpoint_config(init)["model"].get(name, ModelConfig.model_fields[name].default)
    if current == value:
        raise SystemExit(f"--option {text!r}: {init} already has {name}={current!r}; "
                         "both arms would be the same")
    return name, value


def arm_config(args, seed: int, overrides: dict, out: Path) -> TrainConfig:
    return TrainConfig(data=args.data, out=out, init=args.init, seed=seed,
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       max_minutes=args.minutes, dn_groups=1, workers=0, threads=args.threads,
                       cache_backbone_features=True, progress=False,
                       model_overrides=overrides)


def run_arm(args, seed: int, arm: str, overrides: dict) -> dict:
    out = args.out / f"seed{seed}-{arm}"
    summary = run_training(arm_config(args, seed, overrides, out))
    figures = evaluate_checkpoint(out / "last", args.val, noc_images=args.noc_images)
    line = {"kind": "arm", "seed": seed, "arm": arm, "overrides": overrides,
            "images_seen": images_seen(summary),
            "AP": figures["ap"],
            **{f"{mode}_NoC@90": noc["NoC@90"] for mode, noc in figures["noc"].items()}}
    emit(line)
    return line


def summarise(arms: list[dict], option: str) -> dict:
    by_seed: dict[int, dict[str, dict]] = {}
    for line in arms:
        by_seed.setdefault(line["seed"], {})[line["arm"]] = line

    def with_minus_without(key: str, digits: int) -> dict[int, float]:
        return {seed: round(pair["with"][key] - pair["without"][key], digits)
                for seed, pair in sorted(by_seed.items())}

    refine = with_minus_without("refine_NoC@90", 3)
    return {"kind": "summary", "option": option,
            "refine_NoC@90_with_minus_without": refine,
            "mean_refine_difference": round(statistics.fmean(refine.values()), 3),
            "model_only_NoC@90_with_minus_without": with_minus_without("model-only_NoC@90", 3),
            "AP_with_minus_without": with_minus_without("AP", 4)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--init", type=Path, required=True, help="the common start")
    parser.add_argument("--option", required=True, help="NAME=VALUE, a ModelConfig field")
    parser.add_argument("--data", type=Path, default=None,
                        help="default: the synthetic bench's training images (seed 1)")
    parser.add_argument("--val", type=Path, default=None,
                        help="default: the tuning images (seed 1005), not the val images "
                             "(seed 1001) that report the 30-minute runs")
    parser.add_argument("--minutes", type=float, default=7.0, help="per arm")
    parser.add_argument("--epochs", type=int, default=16,
                        help="nominal schedule; the time limit ends it first")
    parser.add_argument("--lr", type=float, default=8e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--noc-images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("work/bench_runs/option_ab"))
    args = parser.parse_args(argv)
    args.data = args.data or train_images()
    args.val = args.val or tuning_images()
    name, value = parse_option(args.option, args.init)
    args.threads = args.threads or default_cpu_threads(0)
    torch.set_num_threads(args.threads)
    emit(machine("cuda" if torch.cuda.is_available() else "cpu"))  # as training picks
    arms = [run_arm(args, seed, arm, overrides)
            for seed in args.seeds
            for arm, overrides in (("without", {}), ("with", {name: value}))]
    summary = summarise(arms, args.option)
    emit(summary)
    return summary


if __name__ == "__main__":
    main()
