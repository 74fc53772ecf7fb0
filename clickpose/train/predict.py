"""Batch prediction of a dataset folder into COCO keypoint results."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader

from clickpose.io import atomic_write_json
from clickpose.model.checkpoint import load_model
from clickpose.train.engine import predict_loader
from clickpose.train.loop import pick_device


def predict_folder(checkpoint: str | Path, data: str | Path, out: str | Path | None = None,
                   batch_size: int = 4, device: str | None = None, max_persons: int | None = None,
                   workers: int = 0, progress: bool = True, flip_test: bool = False
                   ) -> list[dict]:
    """COCO results of `checkpoint` on every image of `data`; written to `out` when given.
    `flip_test`: average each pose with the one decoded on the mirrored image.

    Refuses data whose keypoint schema differs from the checkpoint's (SchemaError).
    """
    from clickpose.data import collate_batch, eval_transforms, load_coco_dataset

    dev = pick_device(device)
    dataset = load_coco_dataset(data)
    model = load_model(checkpoint, dev, schema=dataset.schema)
    if flip_test:
        model.config = model.config.model_copy(update={"flip_test": True})
    mc = model.config
    dataset.transforms = eval_transforms(mc.image_size, mc.max_size, mean=mc.pixel_mean,
                                         std=mc.pixel_std)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_batch)
    results = predict_loader(model, loader, dev, progress=progress,
                             category_id=dataset.index.category_id, max_persons=max_persons)
    if out is not None:
        atomic_write_json(Path(out), results)
    return results
