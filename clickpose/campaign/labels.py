"""Labeled sets of a campaign: COCO dicts whose image `file_name` is the image's key in the
store (`pool/000123.jpg`, `seed/000007.jpg`), merged round after round without ever taking an
image twice, and written out as a dataset folder for training and validation.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from clickpose.io import atomic_write_json
from clickpose.keypoints import KeypointSchema

POOL, SEED = "pool", "seed"


class LabelError(ValueError):
    """A labeled set that cannot be merged or imported as it is."""


def image_key(prefix: str, file_name: str) -> str:
    return f"{prefix}/{file_name}"


def folder_keys(folder: Path, prefix: str) -> dict[str, Path]:
    """{key: path} of the images under `folder`/images, sorted by key."""
    images = Path(folder) / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: no images folder; a dataset folder holds images/ "
                                "(and annotations.json)")
    return {image_key(prefix, p.name): p for p in sorted(images.iterdir()) if p.is_file()}


def subset(coco: dict, keys: Iterable[str], prefix: str) -> dict:
    """The images named by `keys` (prefix/file_name) and their annotations, file_name := key."""
    wanted = set(keys)
    images = [{**im, "file_name": image_key(prefix, im["file_name"])} for im in coco["images"]
              if image_key(prefix, im["file_name"]) in wanted]
    found = {im["file_name"] for im in images}
    missing = sorted(wanted - found)
    if missing:
        raise LabelError(f"{len(missing)} images have no entry in the ground truth, e.g. "
                         f"{missing[0]!r}; the pool's annotations.json must list every image")
    ids = {im["id"] for im in images}
    return {"images": images, "categories": copy.deepcopy(coco["categories"]),
            "annotations": [copy.deepcopy(a) for a in coco["annotations"] if a["image_id"] in ids]}


def empty_like(coco: dict) -> dict:
    return {"images": [], "annotations": [], "categories": copy.deepcopy(coco["categories"])}


def labeled_keys(coco: dict | None) -> list[str]:
    return [] if coco is None else [im["file_name"] for im in coco["images"]]


def _schema(coco: dict, where: str) -> KeypointSchema:
    cats = [c for c in coco["categories"] if c.get("keypoints")]
    if len(cats) != 1:
        raise LabelError(f"{where}: expected one keypoint category, found {len(cats)}")
    return KeypointSchema.from_coco_category(cats[0], where)


def merge(base: dict | None, new: dict) -> dict:
    """base + new as one COCO dict with ids renumbered 1..N; an image in both is an error."""
    if base is None:
        base = empty_like(new)
    _schema(new, "new labels").require_same(_schema(base, "labeled set"), "merging new labels")
    twice = sorted(set(labeled_keys(base)) & set(labeled_keys(new)))
    if twice:
        raise LabelError(f"{len(twice)} images are labeled already, e.g. {twice[0]!r}; an image "
                         "is labeled once: leave labeled images out of the selection")
    images, annotations = [], []
    for part in (base, new):
        id_map = {}
        for im in part["images"]:
            id_map[im["id"]] = len(images) + 1
            images.append({**im, "id": id_map[im["id"]]})
        for ann in part["annotations"]:
            annotations.append({**ann, "id": len(annotations) + 1,
                                "image_id": id_map[ann["image_id"]]})
    return {"images": images, "annotations": annotations,
            "categories": copy.deepcopy(base["categories"])}


def write_folder(coco: dict, sources: Mapping[str, Path], out: Path) -> Path:
    """A dataset folder: annotations.json + images/<prefix> linked to each source's images/."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for prefix, folder in sources.items():
        link = out / "images" / prefix
        target = (Path(folder) / "images").resolve()
        if link.is_symlink() and Path(os.readlink(link)) != target:
            link.unlink()
        if not link.exists():
            link.symlink_to(target, target_is_directory=True)
    atomic_write_json(out / "annotations.json", coco)
    return out


def validate(coco: dict, sources: Mapping[str, Path], out: Path,
             schema: KeypointSchema | None = None) -> Path:
    """Write the folder and check it as training reads it (every image file, every field)."""
    from clickpose.data import read_coco_dataset

    folder = write_folder(coco, sources, out)
    read_coco_dataset(folder, schema=schema)
    return folder
