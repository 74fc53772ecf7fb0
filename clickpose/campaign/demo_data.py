"""Synthetic data for a demo or test campaign: a pool (with its ground truth, which only the
simulated annotator reads), a fixed validation set and a small seed set, each drawn with its
own seed so that no image is shared."""
from __future__ import annotations

import json
from pathlib import Path

from clickpose.data.synthetic import generate_dataset


def synthetic_campaign_data(root: Path, pool: int = 300, val: int = 60, seed_set: int = 30,
                            size: int = 128, max_persons: int = 3, seed: int = 0,
                            progress: bool = True) -> dict[str, Path]:
    """{"pool", "val", "seed"} dataset folders under `root` (kept when already complete)."""
    root = Path(root)
    out = {}
    for offset, (name, count) in enumerate((("pool", pool), ("val", val), ("seed", seed_set))):
        folder = root / name
        if not _complete(folder, count):
            generate_dataset(folder, count, seed=seed * 10 + offset + 1, size=size,
                             max_persons=max_persons, progress=progress, overwrite=True)
        out[name] = folder
    return out


def _complete(folder: Path, count: int) -> bool:
    ann = folder / "annotations.json"
    return ann.is_file() and len(json.loads(ann.read_text())["images"]) == count


def synthetic_adaptation_data(root: Path, extra_keypoints: list[str], train: int = 60,
                              val: int = 20, size: int = 128, max_persons: int = 3,
                              seed: int = 0, progress: bool = True) -> dict[str, Path]:
    """{"train", "val"} folders labelled with COCO-17 plus `extra_keypoints` (e.g. head_top):
    the data to adapt a checkpoint to a grown schema."""
    root = Path(root)
    out = {}
    for offset, (name, count) in enumerate((("train", train), ("val", val))):
        folder = root / name
        if not _complete(folder, count):
            generate_dataset(folder, count, seed=seed * 10 + offset + 5, size=size,
                             max_persons=max_persons, extra_keypoints=tuple(extra_keypoints),
                             progress=progress, overwrite=True)
        out[name] = folder
    return out
