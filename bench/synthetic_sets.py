"""The synthetic bench's image sets, generated once and reused from one cache folder.

Three sets of `photo` people at 256 px, each drawn by its own seed so their scenes never
overlap: the training images (2,000, seed 1), the val images (200, seed 1001), on which the
bench's runs are reported, and the tuning images (200, seed 1005), on which options and
constants are chosen, so that the reported figures never come from the images they were
chosen on.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from clickpose.data.synthetic import GENERATOR_VERSION, generate_dataset

STYLE = "photo"
CACHE = Path("work/bench_synth")
SIZE = 256
TRAIN_IMAGES, TRAIN_SEED = 2000, 1
EVAL_IMAGES = 200
# The train seed's images and the validation seed's never overlap: another seed draws
# other scenes.
VAL_SEED_OFFSET = 1000
TUNING_SEED = 1005


def cached_dataset(cache: Path, images: int, seed: int, size: int, style: str = STYLE) -> Path:
    """The synthetic folder for (style, images, seed, size), generated the first time (the
    generator's version is in the name: a new version draws other scenes)."""
    folder = cache / f"{style}-v{GENERATOR_VERSION}-n{images}-s{seed}-{size}px"
    if (folder / "annotations.json").is_file():
        return folder
    if folder.exists():  # an interrupted generation: start again
        shutil.rmtree(folder)
    return generate_dataset(folder, images, seed=seed, style=style, size=size, progress=True)


def train_images(cache: Path = CACHE) -> Path:
    return cached_dataset(cache, TRAIN_IMAGES, TRAIN_SEED, SIZE)


def val_images(cache: Path = CACHE) -> Path:
    return cached_dataset(cache, EVAL_IMAGES, TRAIN_SEED + VAL_SEED_OFFSET, SIZE)


def tuning_images(cache: Path = CACHE) -> Path:
    return cached_dataset(cache, EVAL_IMAGES, TUNING_SEED, SIZE)
