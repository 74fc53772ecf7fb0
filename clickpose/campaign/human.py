"""People annotate a round: a FiftyOne annotation run with the `clickpose` backend over the
chosen pool samples (the annotator pre-labelled by the current model), then its accepted
images read back as COCO labels with their clicks and seconds."""
from __future__ import annotations

from pathlib import Path

from clickpose.campaign.config import CampaignConfig
from clickpose.campaign.fiftyone_pool import LABELS, pool_samples, poses_to_coco
from clickpose.campaign.simulate import AnnotatedBatch
from clickpose.campaign.threads import torch_threads
from clickpose.keypoints import KeypointSchema


def anno_key(round_index: int) -> str:
    return f"round{round_index}"


def task_folder(cfg: CampaignConfig, round_index: int) -> Path:
    return cfg.round_dir(round_index) / "annotation-task"


def request_people_annotation(cfg: CampaignConfig, round_index: int, checkpoint: Path,
                              keys: list[str], schema: KeypointSchema) -> Path:
    """Create the round's annotation task (once: an existing run is reused); returns its folder."""
    from fiftyone import ViewField as F

    from clickpose.fo_backend import request_annotation

    dataset = pool_samples(cfg, schema)
    key = anno_key(round_index)
    if key not in dataset.list_annotation_runs():
        view = dataset.match(F("key").is_in(list(keys)))
        if len(view) != len(keys):
            raise ValueError(f"FiftyOne dataset '{dataset.name}' has {len(view)} of the "
                             f"{len(keys)} chosen images; recreate it from the pool folder")
        with torch_threads(cfg.inference_threads):   # the model pre-labels the images
            request_annotation(view, key, LABELS, checkpoint, launch=False,
                               task_dir=task_folder(cfg, round_index))
    return Path(dataset.load_annotation_results(key).task_dir)


def collect_people_annotation(cfg: CampaignConfig, round_index: int, keys: list[str],
                              schema: KeypointSchema) -> AnnotatedBatch:
    """Merge the accepted images into `ground_truth` and return them as COCO labels (images
    not accepted stay unlabeled, for a later round) with their click/time records."""
    from fiftyone import ViewField as F

    from clickpose.fo_backend import import_annotation
    from clickpose.labels_fo import sample_poses

    dataset = pool_samples(cfg, schema)
    import_annotation(dataset, anno_key(round_index))
    accepted = set(_accepted_ids(cfg, round_index))
    images, annotations, records = [], [], []
    view = dataset.match(F("key").is_in(list(keys)))
    for sample in view.iter_samples():
        if sample.id not in accepted:
            continue
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": sample["key"],
                       "width": sample.metadata.width, "height": sample.metadata.height})
        poses = sample_poses(sample, LABELS, schema.num_keypoints)
        annotations += poses_to_coco(poses, image_id)
        records.append({"image": sample["key"], "clicks": int(sample[f"{LABELS}_clicks"] or 0),
                        "seconds": float(sample[f"{LABELS}_seconds"] or 0.0),
                        "annotator": "human"})
    for i, ann in enumerate(annotations, start=1):
        ann["id"] = i
    coco = {"images": images, "annotations": annotations,
            "categories": [schema.to_coco_category()]}
    return AnnotatedBatch(labels=coco, records=records)


def _accepted_ids(cfg: CampaignConfig, round_index: int) -> list[str]:
    from clickpose.annotator.task import Task

    return list(Task(task_folder(cfg, round_index)).labels())
