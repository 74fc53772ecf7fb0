"""The campaign's pool in FiftyOne: one sample per pool image (field `key` = its key in the
store), the current model's predictions and uncertainty, the round that chose it and why, and
the labels imported so far (`ground_truth`). Also the COCO <-> Poses conversions that moving
labels between the store and FiftyOne needs."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from tqdm import tqdm

from clickpose.campaign import dataset as campaign_data
from clickpose.campaign.config import CampaignConfig
from clickpose.campaign.scoring import scorer_for
from clickpose.campaign.threads import torch_threads
from clickpose.keypoints import KeypointSchema
from clickpose.poses import Poses
from storage import Datasets

LABELS = "ground_truth"


def coco_to_poses(annotations: list[dict], num_keypoints: int) -> Poses:
    """Ground-truth COCO annotations of one image -> Poses (scores 1, visibility from v)."""
    if not annotations:
        return Poses.empty(num_keypoints)
    kpts = np.array([a["keypoints"] for a in annotations], dtype=np.float64)
    kpts = kpts.reshape(len(annotations), num_keypoints, 3)
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)],
                     dtype=np.float64)
    return Poses(keypoints=kpts[..., :2].copy(), keypoint_scores=np.ones(kpts.shape[:2]),
                 visibility=kpts[..., 2].astype(np.int64), boxes=boxes,
                 scores=np.ones(len(annotations)))


def poses_to_coco(poses: Poses, image_id: int, category_id: int = 1) -> list[dict]:
    """Labelled Poses of one image -> COCO ground-truth annotations (ids left to the merge)."""
    out = []
    for p in range(poses.num_persons):
        vis = poses.visibility[p].astype(int)
        xy = np.where(vis[:, None] > 0, poses.keypoints[p], 0.0)
        flat = np.concatenate([xy, vis[:, None]], axis=1).reshape(-1)
        x0, y0, x1, y1 = (float(v) for v in poses.boxes[p])
        out.append({"id": 0, "image_id": int(image_id), "category_id": int(category_id),
                    "keypoints": [round(float(v), 2) for v in flat],
                    "num_keypoints": int((vis > 0).sum()), "iscrowd": 0,
                    "bbox": [round(v, 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                    "area": round(max(x1 - x0, 0.0) * max(y1 - y0, 0.0), 2)})
    return out


def pool_samples(cfg: CampaignConfig, schema: KeypointSchema, overwrite: bool = False):
    """The campaign's persistent FiftyOne dataset of the pool, field `key`; created once, and
    again when its images are no longer the pool's."""
    import fiftyone as fo

    from clickpose.labels_fo import pool_dataset

    name = cfg.dataset_name
    images = campaign_data.pool_images(cfg)
    if fo.dataset_exists(name) and not overwrite:
        dataset = fo.load_dataset(name)
        if set(dataset.values("filepath")) == {str(p.resolve()) for p in images.values()}:
            return dataset
        # Another pool under the same name (moved or regenerated): build it again.
    dataset = pool_dataset(list(images.values()), name, schema, persistent=True,
                           overwrite=True)
    by_path = {str(path.resolve()): key for key, path in images.items()}
    dataset.add_sample_field("key", fo.StringField)
    for sample in dataset.iter_samples(autosave=True):
        sample["key"] = by_path[sample.filepath]
    return dataset


def publish_pool(cfg: CampaignConfig, datasets: Datasets, checkpoint, progress: bool = True):
    """Refresh the pool dataset: predictions and uncertainty of `checkpoint`, the selection
    of every round (al_round, selection_reason, selection_score), the imported labels."""
    from clickpose.model.checkpoint import load_model
    from clickpose.train.loop import pick_device

    model = load_model(checkpoint, pick_device(cfg.train.device))
    schema = model.schema
    dataset = pool_samples(cfg, schema)
    score = scorer_for(cfg.scorer)
    version = datasets.latest(cfg.name)
    chosen = _selections(datasets, version)
    labels = datasets.labels(version) if version and version.rounds else None
    truth = _labels_by_key(labels, schema.num_keypoints) if labels else {}
    dataset.compute_metadata(progress=False)
    with torch_threads(cfg.inference_threads):
        _write_samples(dataset, model, score, chosen, truth, progress)
    dataset.save()
    return dataset


def _write_samples(dataset, model, score, chosen: dict, truth: dict, progress: bool) -> None:
    from clickpose.data import load_image
    from clickpose.labels_fo import poses_to_detections, poses_to_keypoints

    for sample in tqdm(dataset.iter_samples(autosave=True), total=len(dataset),
                       desc="FiftyOne pool", unit="img", disable=not progress):
        key, w, h = sample["key"], sample.metadata.width, sample.metadata.height
        poses = model.predict(load_image(sample.filepath))
        s = score(key, poses)
        sample["predictions"] = poses_to_keypoints(poses, w, h, hide_unlabelled=False)
        sample["predictions_boxes"] = poses_to_detections(poses, w, h)
        sample["uncertainty"] = float(s.score)
        sample["person_uncertainty"] = [float(p.score) for p in s.persons_worst_first()]
        if key in chosen:
            round_index, entry = chosen[key]
            sample["al_round"] = round_index
            sample["selection_reason"] = str(entry.get("reason", ""))
            sample["selection_score"] = float(entry["score"])
        if key in truth:
            sample[LABELS] = poses_to_keypoints(truth[key], w, h)
            sample[f"{LABELS}_boxes"] = poses_to_detections(truth[key], w, h)


def _selections(datasets: Datasets, version) -> dict[str, tuple[int, dict]]:
    out = {}
    for r in sorted(version.rounds) if version else []:
        for entry in datasets.selection(version, r):
            out[entry["image"]] = (r, entry)
    return out


def _labels_by_key(coco: dict, num_keypoints: int) -> dict[str, Poses]:
    anns = defaultdict(list)
    for a in coco["annotations"]:
        anns[a["image_id"]].append(a)
    return {im["file_name"]: coco_to_poses(anns[im["id"]], num_keypoints)
            for im in coco["images"]}
