"""Which look each strategy's models learnt: val OKS AP per look of a mixed-pool campaign.

Reads the checkpoints `bench/active_learning.py` left in its --out folder (each seed's
round-0 model and every strategy's round models) and measures OKS AP (pycocotools) on each
look's images of the campaign's val set (`--val-photo-share`), so that campaigns run before
the bench recorded AP per look can be read the same way. Prints JSON lines: the machine, one
line per checkpoint, then per strategy the mean over seeds after each round measured.

    python bench/campaign_looks.py --out work/bench_runs/al_mixed [--rounds last|all]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.active_learning import val_ap
from bench.latency import machine


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def campaign_models(out: Path, rounds: str) -> list[dict]:
    """(seed, strategy, round, checkpoint, val) for each model the campaign kept."""
    models = []
    for start in sorted(out.glob("seed-*/round-000/result.json")):
        found = json.loads(start.read_text())
        seed, val = found["seed"], found["config"]["val"]
        models.append({"seed": seed, "strategy": "start", "round": 0,
                       "checkpoint": found["checkpoint"], "val": val})
        for result in sorted(start.parents[1].glob("*/result.json")):
            run = json.loads(result.read_text())
            if "strategy" not in run:
                continue
            measured = run["rounds"][1:] if rounds == "all" else run["rounds"][-1:]
            for r in measured:
                folder = result.parent / f"round-{r['round']:03d}" / "train" / "last"
                models.append({"seed": seed, "strategy": run["strategy"], "round": r["round"],
                               "checkpoint": str(folder), "val": val})
    return models


def mean_by_strategy(lines: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for line in lines:
        groups.setdefault((line["strategy"], line["round"]), []).append(line)
    means = []
    for (strategy, r), group in sorted(groups.items()):
        looks = group[0]["ap_by_look"]
        means.append({"kind": "mean", "strategy": strategy, "round": r,
                      "seeds": [g["seed"] for g in group],
                      "ap": float(np.mean([g["ap"] for g in group])),
                      "ap_by_look": {look: float(np.mean([g["ap_by_look"][look] for g in group]))
                                     for look in looks}})
    return means


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True,
                        help="the --out folder of a bench/active_learning.py campaign")
    parser.add_argument("--rounds", choices=("last", "all"), default="last",
                        help="each strategy's last round only, or every round")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = campaign_models(args.out, args.rounds)
    if not models:
        raise SystemExit(f"{args.out}: no seed-*/round-000/result.json; give the --out folder "
                         "of a finished bench/active_learning.py campaign")
    emit(machine("cpu"))
    lines = []
    for model in models:
        metrics = val_ap(Path(model["checkpoint"]), Path(model["val"]))
        if "ap_by_look" not in metrics:
            raise SystemExit(f"{model['val']}: one look only; per-look AP needs a campaign run "
                             "with --photo-share and --val-photo-share")
        line = {"kind": "model", **{k: model[k] for k in ("seed", "strategy", "round")},
                "ap": metrics["ap"], "ap_by_look": metrics["ap_by_look"],
                "checkpoint": model["checkpoint"]}
        emit(line)
        lines.append(line)
    for mean in mean_by_strategy(lines):
        emit(mean)


if __name__ == "__main__":
    main()
