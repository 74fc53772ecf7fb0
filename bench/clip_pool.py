"""Pools cut from video: each scene as several near-identical frames.

A team's unlabeled pool is often frames of clips, where the next frame shows the same persons a
few pixels away. Labelling a second frame of a scene costs clicks and teaches little that the
first did not; a pool of distinct synthetic scenes hides that. `clip_dataset` turns a folder of
scenes into such a pool: frame 0 is the scene, each further frame the scene moved by a few
pixels, a little brighter or darker and with fresh sensor noise, its keypoints and boxes moved
with it. Frame files are named `<scene>-f<k>.jpg`, so a campaign can count the distinct scenes
each strategy chose (`scene_of`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from clickpose.io import atomic_write_json, staged_folder

MAX_SHIFT = 0.04       # of the image side: a person walks a few pixels between frames
BRIGHTNESS = 0.1       # +- gain
NOISE_STD = 3.0        # grey levels of fresh noise per frame


def scene_of(file_name: str) -> str:
    """The scene a clip frame shows (its file name without `-f<k>`); other names as they are."""
    stem = Path(file_name).stem
    base, _, frame = stem.rpartition("-f")
    return base if base and frame.isdigit() else stem


def shift_image(pixels: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The image moved by (dx, dy) pixels, the uncovered border filled with its edge."""
    h, w = pixels.shape[:2]
    pad = ((max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0)), (0, 0))
    padded = np.pad(pixels, pad, mode="edge")
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[top:top + h, left:left + w]


def shift_person(annotation: dict, dx: int, dy: int, width: int, height: int) -> dict | None:
    """The person moved with the frame: keypoints that leave it become unlabelled (0, 0, 0);
    None when no labelled keypoint stays in view."""
    keypoints = list(annotation["keypoints"])
    for j in range(0, len(keypoints), 3):
        if keypoints[j + 2] <= 0:
            continue
        x, y = keypoints[j] + dx, keypoints[j + 1] + dy
        keypoints[j:j + 3] = [x, y, keypoints[j + 2]] if 0 <= x < width and 0 <= y < height \
            else [0, 0, 0]
    labelled = sum(1 for j in range(2, len(keypoints), 3) if keypoints[j] > 0)
    if labelled == 0:
        return None
    bx, by, bw, bh = annotation["bbox"]
    x0, y0 = min(max(bx + dx, 0), width), min(max(by + dy, 0), height)
    x1, y1 = min(max(bx + bw + dx, 0), width), min(max(by + bh + dy, 0), height)
    return {**annotation, "keypoints": keypoints, "num_keypoints": labelled,
            "bbox": [x0, y0, x1 - x0, y1 - y0]}


def _frame(pixels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    h, w = pixels.shape[:2]
    limit = max(1, round(MAX_SHIFT * min(h, w)))
    dx, dy = (int(v) for v in rng.integers(-limit, limit + 1, size=2))
    gain = 1.0 + rng.uniform(-BRIGHTNESS, BRIGHTNESS)
    moved = shift_image(pixels, dx, dy).astype(np.float32) * gain
    moved += rng.normal(0.0, NOISE_STD, size=moved.shape)
    return np.clip(moved, 0, 255).astype(np.uint8), dx, dy


def clip_dataset(source: Path, frames: int, images: int, seed: int, out: Path) -> Path:
    """`images` frames, `frames` per scene of `source` in its order (the last scene may have
    fewer), written to `out` the first time (staged, then renamed: no half folder)."""
    if frames < 1:
        raise SystemExit(f"--frames-per-scene {frames}: give 1 or more frames per scene")
    if (out / "annotations.json").is_file():
        return out
    coco = json.loads((source / "annotations.json").read_text())
    scenes = -(-images // frames)
    if scenes > len(coco["images"]):
        raise SystemExit(f"{source}: {len(coco['images'])} scenes for {images} frames of "
                         f"{frames}; generate at least {scenes}")
    with staged_folder(out) as staging:
        (staging / "images").mkdir()
        rng = np.random.default_rng(seed)
        people: dict[int, list[dict]] = {}
        for annotation in coco["annotations"]:
            people.setdefault(annotation["image_id"], []).append(annotation)
        images_out, annotations_out = [], []
        for scene in coco["images"][:scenes]:
            pixels = np.asarray(Image.open(source / "images" / scene["file_name"]).convert("RGB"))
            stem = Path(scene["file_name"]).stem
            for k in range(min(frames, images - len(images_out))):
                frame, dx, dy = (pixels, 0, 0) if k == 0 else _frame(pixels, rng)
                image_id = len(images_out) + 1
                name = f"{stem}-f{k}.jpg"
                Image.fromarray(frame).save(staging / "images" / name, quality=95)
                images_out.append({**scene, "id": image_id, "file_name": name})
                for person in people.get(scene["id"], []):
                    moved = shift_person(person, dx, dy, scene["width"], scene["height"])
                    if moved is not None:
                        annotations_out.append({**moved, "id": len(annotations_out) + 1,
                                                "image_id": image_id})
        atomic_write_json(staging / "annotations.json", {
            **coco, "info": {**coco.get("info", {}), "clips": {
                "source": str(source), "frames_per_scene": frames, "seed": seed}},
            "images": images_out, "annotations": annotations_out})
    return out
