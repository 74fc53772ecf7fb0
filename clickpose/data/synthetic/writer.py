"""Writing a synthetic dataset folder: `annotations.json` (COCO person_keypoints) + `images/`.

Image i is drawn from its own random generator seeded with (seed, i), so it does not depend
on how many images are made, and the same arguments give byte-identical files (with the
same numpy and Pillow versions). Besides the COCO fields, each annotation records the
figure's `pose` (standing, walking, ...) and view `yaw` in degrees (0 faces the camera,
180 shows the back, 90 the person's right side), for slicing results by pose. The folder
is built under a temporary name next to `out_dir` and renamed into place at the end: a
crash leaves no half-written dataset behind.
"""
from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from clickpose.data.synthetic.scene import render_scene
from clickpose.data.synthetic.styles import STYLES
from clickpose.io import atomic_write_json
from clickpose.keypoints import coco17_plus

GENERATOR_VERSION = "1.1"
# JPEG at quality 90: a fifth of the PNG size for these noisy images, faster to write, and
# the compression artefacts real COCO photos carry; labels come from geometry, not pixels.
IMAGE_FORMATS = {"jpg": ("JPEG", {"quality": 90}), "png": ("PNG", {"compress_level": 6})}


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image `index`: independent of the number of images."""
    return np.random.default_rng([int(seed), int(index)])


def encode_image(image, image_format: str) -> bytes:
    fmt, options = IMAGE_FORMATS[image_format]
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def generate_dataset(out_dir: str | Path, num_images: int, seed: int, style: str = "photo",
                     extra_keypoints: tuple[str, ...] | list[str] = (), max_persons: int = 4,
                     size: int = 256, progress: bool = True, image_format: str = "jpg",
                     overwrite: bool = False) -> Path:
    """Draw `num_images` scenes into `out_dir` (annotations.json + images/); returns out_dir."""
    out_dir = Path(out_dir)
    if style not in STYLES:
        raise ValueError(f"style '{style}' is unknown; choose one of {', '.join(STYLES)}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format '{image_format}' is unknown; choose jpg or png")
    if num_images < 0 or max_persons < 1 or size < 32 or seed < 0:
        raise ValueError(f"num_images={num_images}, max_persons={max_persons}, size={size}, "
                         f"seed={seed}: need num_images >= 0, max_persons >= 1, size >= 32 "
                         "and seed >= 0")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; choose another folder or "
                              "pass overwrite=True (--overwrite)")
    schema = coco17_plus(list(extra_keypoints))

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    replaced: Path | None = None
    try:
        staging.chmod(0o755)   # mkdtemp's 0700 would survive the rename
        images, annotations = [], []
        (staging / "images").mkdir()
        for index in tqdm(range(num_images), desc=f"synth {style}", unit="img",
                          disable=not progress):
            image, persons = render_scene(image_rng(seed, index), schema, style, size,
                                          max_persons)
            image_id = index + 1
            file_name = f"{image_id:06d}.{image_format}"
            (staging / "images" / file_name).write_bytes(encode_image(image, image_format))
            images.append({"id": image_id, "file_name": file_name,
                           "width": image.width, "height": image.height})
            for person in persons:
                annotations.append(person.to_coco(len(annotations) + 1, image_id))
        info = {
            "description": "ClickPose synthetic people", "version": GENERATOR_VERSION,
            "generator": "clickpose.data.synthetic", "seed": int(seed), "style": style,
            "num_images": int(num_images), "max_persons": int(max_persons), "size": int(size),
            "extra_keypoints": list(extra_keypoints), "image_format": image_format,
        }
        atomic_write_json(staging / "annotations.json", {
            "info": info, "licenses": [], "images": images, "annotations": annotations,
            "categories": [schema.to_coco_category()],
        })
        if out_dir.exists():   # the old folder steps aside; if the new one cannot take its
            replaced = staging.with_name(staging.name + ".replaced")  # place, it comes back
            out_dir.rename(replaced)
        staging.rename(out_dir)
        if replaced is not None:
            shutil.rmtree(replaced)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if replaced is not None and replaced.exists() and not out_dir.exists():
            replaced.rename(out_dir)
        raise
    return out_dir
