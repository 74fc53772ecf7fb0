"""A benchmark's training run: always from scratch, its epochs and totals as JSON lines."""
from __future__ import annotations

import json
import shutil
import sys

from bench.evaluation import emit
from clickpose.train.loop import TrainConfig, train


def run_training(cfg: TrainConfig) -> dict:
    """Train as `cfg` says (removing an earlier run in cfg.out first); print one line per
    epoch and a 'train' line; return train()'s summary."""
    if cfg.out.exists():
        shutil.rmtree(cfg.out)  # a bench run always starts from scratch
    summary = train(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    for record in summary["history"]:
        emit({"kind": "epoch", "epoch": record["epoch"], "steps": record["train"]["steps"],
              "images_per_s": round(record["train"]["images_per_s"], 2),
              "loss": round(record["train"]["losses"]["loss"], 3), "lr": record["lr"],
              "elapsed_s": round(record["elapsed_s"], 1)})
    emit({"kind": "train", "minutes": cfg.max_minutes, "epochs_run": summary["last_epoch"] + 1,
          "images_seen": images_seen(summary),
          "train_config": json.loads(cfg.model_dump_json())})
    return summary


def images_seen(summary: dict) -> int:
    """Training images over every epoch of train()'s summary."""
    return sum(r["train"]["images"] for r in summary["history"])
