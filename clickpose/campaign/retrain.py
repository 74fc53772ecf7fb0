"""Fine-tuning a round's model: from the current checkpoint, on every label so far.

The run folder is the round's: a training that was stopped is resumed from its last epoch,
and a finished one (DONE) is returned as it is, so running the step again costs nothing.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from clickpose.campaign.config import TrainSettings
from clickpose.io import atomic_write_json

DONE = "DONE.json"


def fine_tune(data: Path, out: Path, settings: TrainSettings, init: Path | None = None,
              log=print) -> Path:
    """Train on the dataset folder `data` into `out`; returns the checkpoint to use (last/).

    `init`: the checkpoint to start from (None: a fresh `settings.preset` model);
    `settings.processes` > 1 trains data-parallel under torchrun (one process per GPU). The last
    epoch is kept rather than the best by training loss: with a fixed time budget the last
    one has seen the most labels; the campaign's own validation decides promotion.
    """
    from clickpose.train.launch import train_in_processes
    from clickpose.train.loop import TrainConfig, resumable_epoch, train

    out = Path(out)
    if (out / DONE).is_file():
        return Path(json.loads((out / DONE).read_text())["checkpoint"])
    resume = resumable_epoch(out) is not None
    if not resume and out.exists():
        shutil.rmtree(out)   # a run that never finished an epoch: start it again
    image_size, max_size = settings.input_size(fresh=init is None)
    cfg = TrainConfig(
        data=data, out=out, preset=None if init is not None else settings.preset,
        epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
        workers=settings.workers, max_minutes=settings.max_minutes, resume=resume,
        init=None if resume else init, seed=settings.seed, device=settings.device,
        image_size=image_size, max_size=max_size,
        model_overrides=settings.model_overrides if init is None else {},
        dn_groups=settings.dn_groups, feedback_max_rounds=settings.feedback_max_rounds,
        max_steps_per_epoch=settings.max_steps_per_epoch, threads=settings.threads,
        cache_backbone_features=settings.cache_backbone_features, progress=False)
    summary = train(cfg, log=log) if settings.processes == 1 else \
        train_in_processes(cfg, settings.processes, log=log)
    checkpoint = Path(summary["last"])
    atomic_write_json(out / DONE, {"checkpoint": str(checkpoint),
                                   "last_epoch": summary["last_epoch"]})
    return checkpoint
