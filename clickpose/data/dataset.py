"""The torch Dataset over a validated COCO keypoint folder: (normalised image, target) pairs."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from clickpose.data.coco import CocoKeypointIndex, ImageRecord, load_image
from clickpose.data.transforms import Compose, Normalize, ToTensor


def record_target(record: ImageRecord) -> dict:
    """The target of a stored image (see transforms.py for the fields).

    Boxes are clipped to the image and persons whose box has no area left are dropped, as
    DETR does; crowd boxes are kept as regions to ignore.
    """
    h, w = record.height, record.width
    limit = torch.tensor([w, h, w, h], dtype=torch.float32)
    boxes = torch.minimum(torch.from_numpy(record.boxes).clamp(min=0), limit)
    kept = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    crowd = torch.minimum(torch.from_numpy(record.crowd_boxes).clamp(min=0), limit)
    size = torch.tensor([h, w])
    return {
        "boxes": boxes[kept],  # (N, 4) xyxy
        "keypoints": torch.from_numpy(record.keypoints)[kept],  # (N, K, 3)
        "area": torch.from_numpy(record.areas)[kept],  # (N,)
        "annotation_ids": torch.from_numpy(record.annotation_ids)[kept],  # (N,)
        "crowd_boxes": crowd,  # (M, 4) xyxy
        "image_id": record.image_id,
        "orig_size": size,
        "size": size.clone(),
    }


class CocoKeypointDataset(Dataset):
    """item i -> (image (3, H, W) float normalised, target dict), after `transforms`.

    With `seed`, item i of epoch e draws its augmentation from a generator seeded by
    (seed, e, i), so a run is reproducible whatever the number of workers or the order.
    Without it, random transforms use torch's global RNG (seeded per DataLoader worker).
    """

    def __init__(self, index: CocoKeypointIndex, transforms=None, seed: int | None = None):
        self.index = index
        self.transforms = transforms if transforms is not None else Compose([ToTensor(),
                                                                             Normalize()])
        self.seed = seed
        # In shared memory, so that set_epoch reaches persistent DataLoader workers too.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    # The validated folder, for callers that need more than the pairs.
    @property
    def records(self) -> list[ImageRecord]:
        return self.index.records

    @property
    def schema(self):
        return self.index.schema

    @property
    def coco(self):
        return self.index.coco

    @property
    def report(self):
        return self.index.report

    @property
    def folder(self):
        return self.index.folder

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    def __len__(self) -> int:
        return len(self.index.records)

    def __getitem__(self, i: int):
        record = self.index.records[i]
        image = load_image(record.path)
        generator = None
        if self.seed is not None:
            generator = torch.Generator().manual_seed(_item_seed(self.seed, self.epoch, i))
        return self.transforms(image, record_target(record), generator)


def _item_seed(seed: int, epoch: int, index: int) -> int:
    # Large odd multipliers keep (seed, epoch, index) triples apart; the mask keeps it in int64.
    return (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index) & (2**63 - 1)
