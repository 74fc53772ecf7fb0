"""Synthetic data for a demo or test campaign: a pool (with its ground truth, which only the
simulated annotator reads), a fixed validation set and a small seed set, each drawn with its
own seed so that no image is shared."""
from __future__ import annotations

import json
from pathlib import Path

from clickpose.data.synthetic import GENERATOR_VERSION, generate_dataset


def synthetic_campaign_data(root: Path, pool: int = 300, val: int = 60, seed_set: int = 30,
                            size: int = 128, max_persons: int = 3, seed: int = 0,
                            progress: bool = True) -> dict[str, Path]:
    """{"pool", "val", "seed"} dataset folders under `root` (kept when already complete)."""
    root = Path(root)
    out = {}
    for offset, (name, count) in enumerate((("pool", pool), ("val", val), ("seed", seed_set))):
        out[name] = _drawn(root / name, count, seed * 10 + offset + 1, size, max_persons, (),
                           progress)
    return out


def _drawn(folder: Path, count: int, seed: int, size: int, max_persons: int,
           extra_keypoints: tuple[str, ...], progress: bool) -> Path:
    """`folder` as generate_dataset draws it with these settings: kept when it already holds
    exactly that (its annotations' info says how it was drawn), drawn again otherwise."""
    wanted = {"version": GENERATOR_VERSION, "num_images": count, "seed": seed, "size": size,
              "max_persons": max_persons, "extra_keypoints": list(extra_keypoints)}
    ann = folder / "annotations.json"
    if ann.is_file():
        info = json.loads(ann.read_text()).get("info") or {}
        if all(info.get(key) == value for key, value in wanted.items()):
            return folder
    return generate_dataset(folder, count, seed=seed, size=size, max_persons=max_persons,
                            extra_keypoints=extra_keypoints, progress=progress, overwrite=True)


def synthetic_adaptation_data(root: Path, extra_keypoints: list[str], train: int = 60,
                              val: int = 20, size: int = 128, max_persons: int = 3,
                              seed: int = 0, progress: bool = True) -> dict[str, Path]:
    """{"train", "val"} folders labelled with COCO-17 plus `extra_keypoints` (e.g. head_top):
    the data to adapt a checkpoint to a grown schema."""
    root = Path(root)
    out = {}
    for offset, (name, count) in enumerate((("train", train), ("val", val))):
        out[name] = _drawn(root / name, count, seed * 10 + offset + 5, size, max_persons,
                           tuple(extra_keypoints), progress)
    return out
