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
from pathlib import Path

from bench.synthetic_sets import cached_dataset
from clickpose.campaign import labels as label_sets
from clickpose.data.synthetic import GENERATOR_VERSION
from clickpose.io import atomic_write_json, staged_folder

MIXED_LOOK = "photo"
# The photo scenes are other scenes than the start model's training images (seed 1), the
# active-learning bench's pretraining images (data seed + 2000) and the pools' own seeds.
MIX_SEED_OFFSET = 3000


def check_share(share: float, option: str) -> None:
    if not 0.0 <= share < 1.0:
        raise SystemExit(f"{option} {share}: give a share in [0, 1) of the images drawn in "
                         f"'{MIXED_LOOK}' (0: no mixing)")


def look_of(file_name: str) -> str | None:
    """The look a mixed folder's image was drawn in, from its name; None outside one."""
    stem = Path(file_name).name
    return stem.split("-", 1)[0] if "-" in stem else None


def look_image_ids(truth: dict) -> dict[str, list]:
    """A mixed folder's image ids by look ({} outside a mixed folder)."""
    ids: dict[str, list] = {}
    for image in truth["images"]:
        look = look_of(image["file_name"])
        if look is not None:
            ids.setdefault(look, []).append(image["id"])
    return dict(sorted(ids.items()))


def ap_by_look(truth: dict, results: list[dict], schema) -> dict[str, float]:
    """OKS AP (pycocotools) on each look's images of a mixed folder, each look on its own:
    COCOeval restricted to those image ids (clickpose.evaluate.ap.run_cocoeval)."""
    from clickpose.evaluate.ap import run_cocoeval

    return {look: float(run_cocoeval(truth, results, schema.sigmas_array, image_ids=ids).stats[0])
            for look, ids in look_image_ids(truth).items()}


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
    with staged_folder(out) as staging:
        (staging / "images").mkdir()
        merged = None
        for name, folder in parts.items():
            part = json.loads((folder / "annotations.json").read_text())
            for image in part["images"]:
                source = image["file_name"]
                image["file_name"] = f"{name}-{source}"
                _link(folder / "images" / source, staging / "images" / image["file_name"])
            merged = label_sets.merge(merged, part)   # one schema; ids renumbered 1..N
        atomic_write_json(staging / "annotations.json", {
            "info": {"description": "ClickPose synthetic people, mixed looks",
                     "parts": {name: str(folder) for name, folder in parts.items()}},
            "licenses": [], **merged})
    return out


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:   # another file system, or links not allowed: a copy
        shutil.copy2(source, target)
