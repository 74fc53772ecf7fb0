"""`clickpose train`: train (or fine-tune, or adapt to new keypoints) a Click-Pose model."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from clickpose.cli.main import app
from clickpose.cli.output import fail
from clickpose.train.defaults import CLICK_PRIOR_IMAGES

Opt = typer.Option


@app.command("train")
def train_command(
    data: Annotated[Path, Opt("--data", help="training dataset folder (annotations.json + images/)")],
    out: Annotated[Path, Opt("--out", help="run folder: last/, best/, metrics.jsonl")],
    val: Annotated[Path | None, Opt("--val", help="validation dataset folder (AP each epoch)")] = None,
    preset: Annotated[str | None, Opt(
        "--preset", help="tiny | lite0 | r50 (default tiny, or the --init checkpoint's)")] = None,
    epochs: Annotated[int, Opt("--epochs", min=1)] = 10,
    batch_size: Annotated[int, Opt(
        "--batch-size", min=1, help="images per step (per process under torchrun)")] = 8,
    lr: Annotated[float, Opt("--lr")] = 1e-4,
    backbone_lr_mult: Annotated[float, Opt("--backbone-lr-mult")] = 0.1,
    workers: Annotated[int, Opt("--workers", min=0)] = 2,
    max_minutes: Annotated[float | None, Opt(
        "--max-minutes", help="stop after this many minutes (the checkpoint is saved)")] = None,
    resume: Annotated[bool, Opt("--resume", help="continue the run in --out")] = False,
    init: Annotated[Path | None, Opt(
        "--init", help="start from this checkpoint (same keypoints, or fewer: adaptation)")] = None,
    seed: Annotated[int, Opt("--seed")] = 0,
    device: Annotated[str | None, Opt(
        "--device", help="cpu | cuda (default: cuda if present)")] = None,
    image_size: Annotated[int | None, Opt(
        "--image-size", help="shorter side in pixels (default: the preset's)")] = None,
    backbone_weights: Annotated[str | None, Opt(
        "--backbone-weights", help="none | lite0 | timm (default: the preset's)")] = None,
    dn_groups: Annotated[int, Opt(
        "--dn-groups", min=0, help="noised copies of each pose (pose error modeling)")] = 2,
    feedback: Annotated[bool, Opt(
        "--feedback/--no-feedback", help="human-feedback rounds of simulated clicks")] = True,
    cache_backbone_features: Annotated[bool, Opt(
        "--cache-backbone-features", help="frozen backbones (tiny): compute its features once "
        "per image and flip, keep them between epochs; augmentation is then flip only")] = False,
    ema_decay: Annotated[float | None, Opt(
        "--ema-decay", help="evaluate and save a moving average of the weights (e.g. 0.9998; "
        "warmed up, see clickpose.train.ema); --resume needs the same option")] = None,
    skip_bad: Annotated[bool, Opt(
        "--skip-bad", help="leave out bad images/annotations instead of stopping")] = False,
    click_prior_images: Annotated[int, Opt(
        "--click-prior-images", min=0, help="at the end, fit the checkpoints' click prior "
        "(what a click says about the rest of its person) on this many training images, "
        "pooled with the prior inherited from --init; 0: no fit (a run from --init keeps "
        "the inherited prior)")] = CLICK_PRIOR_IMAGES,
) -> None:
    """Train Click-Pose: AdamW, pose error modeling, human-feedback rounds, val AP per epoch.

    On several GPUs (or CPU processes), launch it with torchrun, e.g.
    `torchrun --nproc_per_node 4 --no-python clickpose train ...`: data-parallel, --batch-size
    images per process and step (clickpose.train.distributed)."""
    from clickpose.data.errors import DataError
    from clickpose.keypoints import SchemaError
    from clickpose.model.checkpoint import CheckpointError
    from clickpose.train.loop import TrainConfig, train

    console = Console(highlight=False)
    cfg = TrainConfig(data=data, out=out, val=val, preset=preset, epochs=epochs,
                      batch_size=batch_size, lr=lr, backbone_lr_mult=backbone_lr_mult,
                      workers=workers, max_minutes=max_minutes, resume=resume, init=init,
                      seed=seed, device=device, image_size=image_size,
                      backbone_weights=backbone_weights, dn_groups=dn_groups, feedback=feedback,
                      skip_bad=skip_bad, cache_backbone_features=cache_backbone_features,
                      ema_decay=ema_decay, click_prior_images=click_prior_images)
    try:
        summary = train(cfg, log=console.print)
    except (DataError, SchemaError, CheckpointError, FileExistsError, ValueError) as e:
        fail(console, e)
    if not summary["main"]:
        return  # a torchrun process other than 0: process 0 reports
    best = summary["best_metric"]
    best_text = "no epoch finished" if best is None else (
        f"val AP {best:.4f}" if summary["best_metric_name"] == "val AP"
        else f"train loss {-best:.4f}")
    console.print(f"done: last checkpoint {summary['last']}, best {summary['best']} ({best_text})")
