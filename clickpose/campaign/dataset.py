"""The campaign's dataset in the store: the pool (round-independent) and one committed
labeled set per round, each imported exactly once."""
from __future__ import annotations

import json
from pathlib import Path

from clickpose.campaign import labels as label_sets
from clickpose.campaign.config import CampaignConfig
from clickpose.keypoints import KeypointSchema
from storage import ConflictError, Datasets, DatasetVersion


def sources(cfg: CampaignConfig) -> dict[str, Path]:
    """Where the images behind each key prefix are, locally."""
    found = {label_sets.POOL: Path(cfg.pool)}
    if cfg.seed_labels is not None:
        found[label_sets.SEED] = Path(cfg.seed_labels)
    return found


def pool_images(cfg: CampaignConfig) -> dict[str, Path]:
    return label_sets.folder_keys(cfg.pool, label_sets.POOL)


def ingest_pool(datasets: Datasets, cfg: CampaignConfig) -> DatasetVersion:
    """Upload the pool's images and commit the pool listing, unless it is there already."""
    files = pool_images(cfg)
    latest = datasets.latest(cfg.name)
    if latest is not None and latest.pool is not None:
        present = {p.key for p in datasets.pool(latest)}
        if present == set(files):
            return latest
    images = datasets.ingest_images(files)
    return datasets.set_pool(cfg.name, images, expected_version=latest.number if latest else 0,
                             message=f"pool of {len(images)} images")


def labels_after(datasets: Datasets, name: str, round_index: int | None = None) -> dict | None:
    """The labeled set after `round_index` (default: the last one), None before round 0."""
    latest = datasets.latest(name)
    if latest is None or not latest.rounds:
        return None
    return datasets.labels(latest, round_index)


def import_round(datasets: Datasets, cfg: CampaignConfig, round_index: int, new_labels: dict,
                 selection: list[dict] | None, records: list[dict] | None,
                 schema: KeypointSchema | None = None) -> DatasetVersion:
    """Commit round `round_index` = labels so far + `new_labels`, validated as training will
    read them. Idempotent: a round that is in the store already is returned as it is, so a
    step run twice never imports an image twice; a concurrent commit is re-read, not lost."""
    for _attempt in range(3):
        latest = datasets.latest(cfg.name)
        if latest is not None and round_index in latest.rounds:
            return latest
        base = datasets.labels(latest) if latest is not None and latest.rounds else None
        merged = label_sets.merge(base, new_labels)
        label_sets.validate(merged, sources(cfg), cfg.round_dir(round_index) / "labels", schema)
        try:
            return datasets.add_round(cfg.name, round_index, merged,
                                      expected_version=latest.number if latest else 0,
                                      selection=selection, annotations=records,
                                      message=f"round {round_index}: +{len(new_labels['images'])}"
                                              " images")
        except ConflictError:
            continue
    raise ConflictError(f"round {round_index} of '{cfg.name}': the dataset kept changing while "
                        "importing; make sure one campaign run at a time writes it")


def training_folder(datasets: Datasets, cfg: CampaignConfig, round_index: int) -> Path:
    """The round's labeled set as a dataset folder (annotations.json + linked images)."""
    version = datasets.latest(cfg.name)
    coco = datasets.labels(version, round_index)
    return label_sets.write_folder(coco, sources(cfg), cfg.round_dir(round_index) / "labels")


def seed_labels(cfg: CampaignConfig) -> dict:
    """Round 0's labels: the seed set, file names turned into keys (seed/<file_name>)."""
    if cfg.seed_labels is None:
        raise ValueError("campaign: give seed_labels (a labeled dataset folder) for the first "
                         "model, or an initial_checkpoint and seed_labels to record round 0")
    where = Path(cfg.seed_labels) / "annotations.json"
    if not where.is_file():
        raise FileNotFoundError(f"{where}: seed_labels must be a labeled dataset folder "
                                "(annotations.json + images/); give its path in seed_labels")
    coco = json.loads(where.read_text())
    keys = [label_sets.image_key(label_sets.SEED, im["file_name"]) for im in coco["images"]]
    return label_sets.subset(coco, keys, label_sets.SEED)


def pool_ground_truth(cfg: CampaignConfig) -> dict:
    where = Path(cfg.pool) / "annotations.json"
    if not where.is_file():
        raise FileNotFoundError(f"{where}: the simulated annotator labels from the pool's ground "
                                "truth; give a pool folder with annotations.json or use "
                                "annotation='human'")
    return json.loads(where.read_text())
