"""Pre-labels for a task: the model's poses per image, kept above a score, worst first."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from clickpose.annotator.poses_json import order_worst_first
from clickpose.annotator.task import TaskImage
from clickpose.data.coco import load_image
from clickpose.poses import Poses


def keep_persons(poses: Poses, min_score: float = 0.3, max_persons: int | None = 20) -> Poses:
    keep = np.flatnonzero(poses.scores >= min_score)
    keep = keep[np.argsort(-poses.scores[keep], kind="stable")][:max_persons]
    return poses.select(keep)


def prelabel(model, filepath: str | Path, min_score: float = 0.3,
             max_persons: int | None = 20,
             person_scores: dict[int, float] | None = None) -> Poses:
    """The model's poses for one image, persons worst first (by `person_scores` from
    selection when given, indexed like the model's prediction, else by confidence)."""
    poses = model.predict(load_image(filepath))
    if person_scores:
        keep = np.flatnonzero(poses.scores >= min_score)[:max_persons]
        poses = poses.select(keep)
        person_scores = {new: person_scores[int(old)] for new, old in enumerate(keep)
                         if int(old) in person_scores}
    else:
        poses = keep_persons(poses, min_score, max_persons)
    return poses.select(order_worst_first(poses, person_scores))


def image_id_for(path: str | Path) -> str:
    """A task image id from a file name: the stem with other characters replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem)[:128] or "image"


def task_images_from_files(paths: list[str | Path]) -> list[TaskImage]:
    images, seen = [], set()
    for path in tqdm(paths, desc="reading images", unit="img", disable=len(paths) < 50):
        path = Path(path).resolve()
        image_id = image_id_for(path)
        if image_id in seen:
            raise ValueError(f"{path}: another image has the same name stem '{image_id}'; "
                             "rename one")
        seen.add(image_id)
        width, height = load_image(path).size
        images.append(TaskImage(id=image_id, filepath=str(path), width=width, height=height))
    return images
