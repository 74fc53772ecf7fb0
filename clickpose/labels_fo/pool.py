"""The unlabeled pool as a FiftyOne dataset: one sample per image, the model's predictions
as Keypoints + Detections, selection's scores as sample fields the App sorts and filters by.

Sample fields written here:
    predictions / predictions_boxes   fo.Keypoints / fo.Detections of the model
    uncertainty                        float, higher = more useful to label
    person_uncertainty                 list of floats per predicted person (worst first order)
    al_round                           int, the active-learning round that selected the image
    selection_reason                   str, why it was selected
"""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from clickpose.keypoints import KeypointSchema
from clickpose.labels_fo.convert import (
    keypoints_to_poses,
    poses_to_detections,
    poses_to_keypoints,
    set_skeleton,
)
from clickpose.poses import Poses

SELECTION_FIELDS = ("uncertainty", "person_uncertainty", "al_round", "selection_reason")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def pool_dataset(images: str | Path | list, name: str, schema: KeypointSchema,
                 persistent: bool = False, overwrite: bool = False):
    """A FiftyOne dataset of the pool's images (a folder or a list of paths), metadata
    computed, with the schema's skeleton as default."""
    import fiftyone as fo

    if isinstance(images, (str, Path)):
        folder = Path(images)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder of images")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        paths = [Path(p) for p in images]
    if not paths:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {images}")
    if overwrite and fo.dataset_exists(name):
        fo.delete_dataset(name)
    dataset = fo.Dataset(name, persistent=persistent)
    dataset.add_samples([fo.Sample(filepath=str(p.resolve())) for p in paths], progress=False)
    dataset.compute_metadata(progress=False)
    set_skeleton(dataset, schema)
    return dataset


def add_predictions(samples, model, field: str = "predictions", min_score: float = 0.3,
                    max_persons: int | None = 20, progress: bool = True) -> None:
    """Run the model on every sample; write `field` (Keypoints) and `field`_boxes."""
    from clickpose.annotator.prelabel import keep_persons
    from clickpose.data.coco import load_image

    samples.compute_metadata(progress=False)
    for sample in tqdm(samples.iter_samples(autosave=True), total=len(samples),
                       desc=f"predicting {field}", unit="img", disable=not progress):
        poses = keep_persons(model.predict(load_image(sample.filepath)), min_score, max_persons)
        w, h = sample.metadata.width, sample.metadata.height
        sample[field] = poses_to_keypoints(poses, w, h, hide_unlabelled=False)
        sample[f"{field}_boxes"] = poses_to_detections(poses, w, h)


def sample_poses(sample, field: str, num_keypoints: int) -> Poses:
    """The Poses stored in a sample's Keypoints field (boxes from the Keypoint or
    `field`_boxes)."""
    boxes = sample[f"{field}_boxes"] if sample.has_field(f"{field}_boxes") else None
    return keypoints_to_poses(sample[field], sample.metadata.width, sample.metadata.height,
                              num_keypoints, detections=boxes)


def _image_key(sample, scores: dict) -> object | None:
    """Which key of `scores` names this sample: its id, its COCO id, its path or file name."""
    candidates = [sample.id, sample.filepath, Path(sample.filepath).name,
                  Path(sample.filepath).stem]
    if sample.has_field("coco_id") and sample["coco_id"] is not None:
        candidates.insert(1, int(sample["coco_id"]))
    for key in candidates:
        if key in scores:
            return key
        if isinstance(key, str) and key.isdigit() and int(key) in scores:
            return int(key)
    return None


def set_selection_fields(samples, image_scores: list, al_round: int | None = None,
                         reasons: dict | None = None) -> int:
    """Write selection's ImageScores (matched by sample id, coco_id, path, file name or stem)
    as sample fields; returns the number of samples matched. `reasons`: image id -> reason."""
    scores = {s.image_id: s for s in image_scores}
    reasons = reasons or {}
    matched = 0
    for sample in samples.iter_samples(autosave=True):
        key = _image_key(sample, scores)
        if key is None:
            continue
        score = scores[key]
        sample["uncertainty"] = float(score.score)
        sample["person_uncertainty"] = [float(p.score) for p in score.persons_worst_first()]
        if al_round is not None:
            sample["al_round"] = int(al_round)
        reason = reasons.get(key) or score.note or score.method
        sample["selection_reason"] = str(reason)
        matched += 1
    return matched
