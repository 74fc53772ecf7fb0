"""Helpers for the annotator and FiftyOne backend tests: synthetic images, a tiny Click-Pose
checkpoint whose clicks move the other keypoints, a task over the images."""
from __future__ import annotations

import socket
from pathlib import Path

import torch

from clickpose.annotator.prelabel import prelabel, task_images_from_files
from clickpose.annotator.task import create_task
from clickpose.data.synthetic import generate_dataset
from clickpose.keypoints import coco17
from clickpose.model import build_model, preset_config
from clickpose.model.checkpoint import save_checkpoint


def tiny_model():
    """Untrained tiny model; its zero-initialised refinement heads get small weights (as
    training would give them) so that a click changes the person's other keypoints."""
    torch.manual_seed(0)
    model = build_model(preset_config("tiny"), coco17())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.keypoint_decoder.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


def make_checkpoint(folder: Path):
    model = tiny_model()
    save_checkpoint(folder, model)
    return model, folder


def make_images(folder: Path, n: int = 3) -> list[Path]:
    out = generate_dataset(folder, n, seed=3, size=256, max_persons=2, progress=False)
    return sorted((out / "images").iterdir())


def make_task(folder: Path, model, checkpoint: Path, paths: list[Path], persons: int = 2):
    images = task_images_from_files(paths)
    prelabels = {im.id: prelabel(model, im.filepath, min_score=0.0, max_persons=persons)
                 for im in images}
    return create_task(folder, images, prelabels, model.schema, checkpoint=checkpoint)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
