"""Synthetic folders that mix two looks: a share of `photo` scenes, the look the start model
was trained on, among scenes of another style. An active-learning pool is then mostly what
the model already knows, as a team's pool of everyday images is, with the new look a minority.

Each image's file name starts with its look (`photo-000001.jpg`, `art-000001.jpg`), so a
campaign can count which look each strategy chose.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from bench.train_synthetic import cached_dataset
from clickpose.data.synthetic import GENERATOR_VERSION
from clickpose.io import atomic_write_json

MIXED_LOOK = "photo"
# The photo scenes are other scenes than the start model's training images (seed 1), the
# active-learning bench's pretraining images (data seed + 2000) and the pools' own seeds.
MIX_SEED_OFFSET = 3000


def check_share(share: float, option: str) -> float:
    if not 0.0 <= share < 1.0:
        raise SystemExit(f"{option} {share}: give a share in [0, 1) of the images drawn in "
                         f"'{MIXED_LOOK}' (0: no mixing)")
    return share


def look_of(file_name: str) -> str | None:
    """The look a mixed folder's image was drawn in, from its name; None outside one."""
    stem = Path(file_name).name
    return stem.split("-", 1)[0] if "-" in stem else None


def mixed_dataset(cache: Path, images: int, seed: int, size: int, style: str,
                  photo_share: float) -> Path:
    """`images` scenes, round(images x photo_share) of them in photo and the rest in `style`,
    generated (and merged) the first time; photo_share 0 is the plain `style` folder."""
    if photo_share <= 0.0 or style == MIXED_LOOK:
        return cached_dataset(cache, images, seed, size, style=style)
    folder = cache / (f"mix-{style}-{MIXED_LOOK}{photo_share:g}-v{GENERATOR_VERSION}-"
                      f"n{images}-s{seed}-{size}px")
    if (folder / "annotations.json").is_file():
        return folder
    photo_images = round(images * photo_share)
    parts = {style: cached_dataset(cache, images - photo_images, seed, size, style=style),
             MIXED_LOOK: cached_dataset(cache, photo_images, seed + MIX_SEED_OFFSET, size,
                                        style=MIXED_LOOK)}
    return merge_folders(parts, folder)


def merge_folders(parts: dict[str, Path], out: Path) -> Path:
    """One COCO folder from several (same schema): file names prefixed with the part's name,
    ids renumbered; images hard-linked where the file system allows. Written beside `out`
    and renamed into place, so an interrupted merge leaves no half folder behind."""
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / "images").mkdir()
        images, annotations, categories = [], [], None
        for name, folder in parts.items():
            coco = json.loads((folder / "annotations.json").read_text())
            categories = categories or coco["categories"]
            if coco["categories"] != categories:
                raise ValueError(f"{folder}/annotations.json: its categories differ from the "
                                 "other parts'; merge folders labelled with one schema")
            new_ids = {}
            for image in coco["images"]:
                new_ids[image["id"]] = len(images) + 1
                file_name = f"{name}-{image['file_name']}"
                _link(folder / "images" / image["file_name"], staging / "images" / file_name)
                images.append({**image, "id": new_ids[image["id"]], "file_name": file_name})
            for ann in coco["annotations"]:
                annotations.append({**ann, "id": len(annotations) + 1,
                                    "image_id": new_ids[ann["image_id"]]})
        atomic_write_json(staging / "annotations.json", {
            "info": {"description": "ClickPose synthetic people, mixed looks",
                     "parts": {name: str(folder) for name, folder in parts.items()}},
            "licenses": [], "images": images, "annotations": annotations,
            "categories": categories})
        staging.chmod(0o755)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:   # another file system, or links not allowed: a copy
        shutil.copy2(source, target)
