"""Datasets: COCO keypoint folders (validated up front), transforms, batching.

Names are re-exported lazily so that `import clickpose.data` stays cheap (no torch until a
torch-backed name is used).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "DataError": "clickpose.data.errors",
    "DataIssue": "clickpose.data.errors",
    "DataReport": "clickpose.data.errors",
    "ANNOTATIONS_FILE": "clickpose.data.coco",
    "IMAGES_DIR": "clickpose.data.coco",
    "CocoKeypointIndex": "clickpose.data.coco",
    "ImageRecord": "clickpose.data.coco",
    "load_coco_dataset": "clickpose.data.coco",
    "load_image": "clickpose.data.coco",
    "read_coco_dataset": "clickpose.data.coco",
    "CocoKeypointDataset": "clickpose.data.dataset",
    "record_target": "clickpose.data.dataset",
    "collate_batch": "clickpose.data.collate",
    "eval_transforms": "clickpose.data.transforms",
    "train_transforms": "clickpose.data.transforms",
}

__all__ = [
    "ANNOTATIONS_FILE",
    "IMAGES_DIR",
    "CocoKeypointDataset",
    "CocoKeypointIndex",
    "DataError",
    "DataIssue",
    "DataReport",
    "ImageRecord",
    "collate_batch",
    "eval_transforms",
    "load_coco_dataset",
    "load_image",
    "read_coco_dataset",
    "record_target",
    "train_transforms",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'clickpose.data' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
