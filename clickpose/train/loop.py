"""The training recipe behind `clickpose train`: data, model, epochs, validation, checkpoints.

A run folder holds `last/` (checkpoint + training state for --resume), `best/` (the
checkpoint with the best validation AP, or the lowest training loss without --val) and
`metrics.jsonl` (one JSON line per epoch).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch.utils.data import DataLoader, DistributedSampler

from clickpose.io import atomic_write_text
from clickpose.keypoints import KeypointSchema, SchemaError
from clickpose.model.checkpoint import (
    CheckpointError,
    build_from_config,
    checkpoint_folder,
    checkpoint_schema,
    init_from_checkpoint,
    load_training_state,
    no_resume_advice,
    read_checkpoint_config,
    read_click_prior,
    read_inherited_click_prior,
    read_weights,
    save_checkpoint,
    save_training_state,
)
from clickpose.model.criterion import LossWeights, SetCriterion
from clickpose.model.pose_errors import ErrorProbs
from clickpose.train.defaults import CLICK_PRIOR_IMAGES
from clickpose.train.distributed import Distributed, join_process_group, leave_process_group
from clickpose.train.ema import build_ema, evaluated
from clickpose.train.engine import StepOptions, evaluate_ap_on, predict_loader, train_one_epoch
from clickpose.train.feature_cache import BackboneFeatureCache, backbone_is_frozen
from clickpose.train.optim import (
    build_optimizer,
    build_scheduler,
    fit_schedule_to_deadline,
    follow_new_plan,
    schedule_plan,
)

METRICS_FILE = "metrics.jsonl"
# Each process of a data-parallel run draws its own denoising and feedback noise.
NOISE_SEED_STRIDE = 7919


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: Path
    out: Path
    val: Path | None = None
    preset: str | None = None          # default 'tiny', or the --init checkpoint's architecture
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-4
    lr_schedule: Literal["step", "cosine"] = "step"  # cosine: smooth decay to 1 % of lr
    backbone_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    clip_max_norm: float = 0.1
    workers: int = 2
    max_minutes: float | None = None
    resume: bool = False
    init: Path | None = None
    seed: int = 0
    device: str | None = None          # default: cuda when present, else cpu
    image_size: int | None = None      # default: the preset's
    max_size: int | None = None
    model_overrides: dict = {}         # other ModelConfig fields, e.g. {'num_queries': 50}
    dn_groups: int = 2
    score_target: Literal["match", "oks"] = "match"  # oks: scores learn pose quality
    # Loss terms weighed otherwise than clickpose.model.criterion.LossWeights' defaults,
    # e.g. {'heatmap': 2.0}.
    loss_weights: dict[str, float] = {}
    feedback: bool = True
    feedback_max_rounds: int | None = None
    backbone_weights: str | None = None  # 'none' | 'lite0' | 'timm'; default: the preset's
    progress: bool = True
    max_steps_per_epoch: int | None = None
    skip_bad: bool = False
    threads: int | None = None         # CPU threads for torch; default: cores left by workers
    # Frozen backbone only: keep its features between epochs (augmentation: flip only).
    cache_backbone_features: bool = False
    feature_cache_mb: float = 2048.0
    # A moving average of the weights is what the run evaluates and saves (None: the
    # weights themselves); see clickpose.train.ema.
    ema_decay: float | None = None
    # At the end, the click prior of last/ and best/ is fitted on this many training images
    # and pooled with the one inherited from --init (clickpose.model.click_prior; 0: no fit,
    # the checkpoints keep what they inherited).
    click_prior_images: int = Field(CLICK_PRIOR_IMAGES, ge=0)

    @field_validator("loss_weights")
    @classmethod
    def _known_loss_terms(cls, value: dict[str, float]) -> dict[str, float]:
        LossWeights.with_changes(value)  # refuses an unknown term before any work
        return value


def pick_device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_cpu_threads(workers: int) -> int:
    """Torch threads on a CPU run: the cores the data workers leave free (at least one, at
    most torch's own default). Oversubscribed cores make every step slower, not faster."""
    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - workers))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def dataset_fingerprint(dataset) -> dict:
    """What the model was trained on: the annotation file's SHA-256 and its size."""
    ann = Path(dataset.index.annotation_file)
    return {"folder": str(dataset.folder), "annotations_sha256":
            hashlib.sha256(ann.read_bytes()).hexdigest(), "num_images": len(dataset),
            "num_persons": int(sum(r.num_persons for r in dataset.records))}


def train_sizes(image_size: int) -> list[int]:
    """Multi-scale training around the eval size (shorter side), multiples of 32."""
    sizes = {max(32, round(image_size * f / 32) * 32) for f in (0.75, 0.875, 1.0, 1.125)}
    return sorted(sizes)


def _write_epoch_record(path: Path, record: dict) -> None:
    """Add an epoch's line to metrics.jsonl, atomically. Lines of this epoch or later go: a
    run stopped after logging an epoch but before saving its training state runs it again."""
    kept = [r for r in _read_jsonl(path) if r["epoch"] < record["epoch"]]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in [*kept, record]))


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---- model construction -------------------------------------------------------------------
def make_model(cfg: TrainConfig, schema: KeypointSchema) -> tuple[torch.nn.Module, dict]:
    """A fresh model for `schema`, from --init's architecture or the preset; returns the
    model and what --init did."""
    from clickpose.model import build_model
    from clickpose.model.presets import ModelConfig, preset_config

    overrides = dict(cfg.model_overrides)
    if cfg.image_size:
        overrides["image_size"] = cfg.image_size
    if cfg.max_size:
        overrides["max_size"] = cfg.max_size
    init_report: dict = {}
    if cfg.init is not None and cfg.preset is None:
        config = read_checkpoint_config(cfg.init)["model"]
        config = {**config, "num_keypoints": schema.num_keypoints, "backbone_weights": "none",
                  **overrides}
        model = build_model(ModelConfig.model_validate(config), schema)
    else:
        if cfg.backbone_weights:
            overrides["backbone_weights"] = cfg.backbone_weights
        model = build_model(preset_config(cfg.preset or "tiny", schema.num_keypoints,
                                          **overrides), schema)
    if cfg.init is not None:
        init_report = init_from_checkpoint(model, cfg.init)
        # Inherited, so the run's checkpoints carry it until the fit at the end pools the
        # run's own data with it (clickpose.model.click_prior.pooled). Not by a model adapted
        # to new keypoints, which its start's prior lacks: its fit is pooled with a prior
        # that says nothing instead (clickpose.train.click_prior_fit.regularized).
        if not init_report["adapted"]:
            model.click_prior = read_click_prior(cfg.init)
    return model, init_report


def _check_resume_schema(last: Path, schema: KeypointSchema, data: Path) -> None:
    saved = checkpoint_schema(last)
    try:
        saved.require_same(schema, f"--resume {last}")
    except SchemaError as e:
        raise SchemaError(f"{e} (the data in {data} has '{schema.name}')") from None


# ---- the run --------------------------------------------------------------------------------
def train(cfg: TrainConfig, log=print) -> dict:
    """Train as `cfg` says; returns a summary (epochs run, best metric, paths, speed; `main`
    is False in the processes of a torchrun launch other than process 0, which log nothing)."""
    previous_threads = torch.get_num_threads()
    if pick_device(cfg.device).type == "cpu":
        torch.set_num_threads(cfg.threads or default_cpu_threads(cfg.workers))
    parallel = join_process_group(cfg.device)
    try:
        return _train(cfg, log if parallel.main else _silent, parallel)
    finally:
        torch.set_num_threads(previous_threads)
        if parallel.active:
            leave_process_group()


def _silent(*_args, **_kwargs) -> None:
    pass


def _train(cfg: TrainConfig, log, parallel: Distributed) -> dict:
    from clickpose.data import collate_batch, eval_transforms, load_coco_dataset, train_transforms
    from clickpose.data.transforms import flip_resize_transforms

    started = time.monotonic()
    deadline = started + cfg.max_minutes * 60 if cfg.max_minutes else None
    out = Path(cfg.out)
    last_dir, best_dir = out / "last", out / "best"
    if not cfg.resume and (last_dir / "config.json").exists():
        raise FileExistsError(f"{out} already holds a run (last/config.json); pass --resume to "
                              "continue it or choose another --out")
    if cfg.resume and cfg.init is not None:
        raise ValueError("--resume and --init exclude each other: --resume continues the run in "
                         "--out, --init starts a new run from another checkpoint")
    seed_everything(cfg.seed)
    device = parallel.device if parallel.active else pick_device(cfg.device)
    amp_dtype = torch.bfloat16 if device.type == "cuda" else None

    train_set = load_coco_dataset(cfg.data, skip_bad=cfg.skip_bad, seed=cfg.seed)
    schema = train_set.schema
    val_set = None
    if cfg.val is not None:
        val_set = load_coco_dataset(cfg.val, skip_bad=cfg.skip_bad)
        try:
            schema.require_same(val_set.schema, f"--val {cfg.val}")
        except SchemaError as e:
            raise SchemaError(f"{e} (training data {cfg.data} has '{schema.name}')") from None

    if cfg.resume:
        if not (last_dir / "config.json").exists():
            raise CheckpointError(f"--resume: {last_dir} holds no checkpoint; start the run "
                                  "without --resume")
        _check_resume_schema(last_dir, schema, cfg.data)
        model = build_from_config(read_checkpoint_config(last_dir))
        model.load_state_dict(read_weights(last_dir))
        model.click_prior = read_inherited_click_prior(last_dir)  # not its own last fit
        init_report = {}
    else:
        model, init_report = make_model(cfg, schema)
    model.to(device)
    parallel.broadcast_weights(model)
    mc = model.config
    feature_cache = None
    if cfg.cache_backbone_features:
        if not backbone_is_frozen(model):
            raise ValueError(
                f"--cache-backbone-features: the '{mc.preset}' backbone trains (some weights "
                "or batch norms are not frozen), so its features change every step; drop the "
                "option, or use a preset with a frozen backbone such as 'tiny'")
        feature_cache = BackboneFeatureCache(cfg.feature_cache_mb)
        train_set.transforms = flip_resize_transforms(schema, mc.image_size, mc.max_size,
                                                      mean=mc.pixel_mean, std=mc.pixel_std)
    else:
        train_set.transforms = train_transforms(schema, train_sizes(mc.image_size), mc.max_size,
                                                mean=mc.pixel_mean, std=mc.pixel_std)
    if val_set is not None:
        val_set.transforms = eval_transforms(mc.image_size, mc.max_size, mean=mc.pixel_mean,
                                             std=mc.pixel_std)
    loader_gen = torch.Generator().manual_seed(cfg.seed)
    # Data-parallel: each process takes its share of every epoch, --batch-size a step.
    sampler = DistributedSampler(train_set, parallel.world, parallel.rank, seed=cfg.seed) \
        if parallel.active else None
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=sampler is None,
                              sampler=sampler, num_workers=cfg.workers, collate_fn=collate_batch,
                              drop_last=False, generator=loader_gen,
                              pin_memory=device.type == "cuda")
    # No persistent workers: each epoch's workers must see set_epoch() (seeded augmentation).
    # Process 0 alone validates; the others wait for it at the epoch's end.
    val_loader = None if val_set is None or not parallel.main else DataLoader(
        val_set, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
        collate_fn=collate_batch)

    criterion = SetCriterion(schema, weights=LossWeights.with_changes(cfg.loss_weights),
                             score_target=cfg.score_target).to(device)
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.backbone_lr_mult)
    steps_per_epoch = len(train_loader) if cfg.max_steps_per_epoch is None else \
        min(len(train_loader), cfg.max_steps_per_epoch)
    scheduler = build_scheduler(optimizer, max(1, steps_per_epoch * cfg.epochs),
                                kind=cfg.lr_schedule)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1 + NOISE_SEED_STRIDE * parallel.rank)
    generators = {"noise": noise_gen, "loader": loader_gen}

    start_epoch, best = 0, None
    ema = None if cfg.resume else build_ema(model, cfg.ema_decay)
    if cfg.resume:
        plan = schedule_plan(scheduler)  # this run's --epochs, before the saved one loads
        state = load_training_state(last_dir, optimizer, scheduler, generators)
        _check_state_fits_weights(last_dir, state)
        ema = _resume_average(model, state["online"], cfg.ema_decay, last_dir)
        if follow_new_plan(scheduler, plan):
            log(f"--epochs {cfg.epochs}: the lr schedule follows the new epoch count")
        start_epoch = state["epoch"] + 1
        best = state["extra"].get("best")
        if not parallel.main:  # the saved noise stream is process 0's
            noise_gen.manual_seed(cfg.seed + 1 + NOISE_SEED_STRIDE * parallel.rank + start_epoch)
        log(f"resuming {out} at epoch {start_epoch} (best so far: {best})")
    if init_report:
        log(f"initialised from {cfg.init}" + (
            f": keypoint adaptation, new keypoints start from {init_report['parents']}"
            if init_report["adapted"] else "") + (
            f"; {len(init_report['fresh'])} tensors left at their initialisation"
            if init_report["fresh"] else ""))

    options = StepOptions(dn_groups=cfg.dn_groups, error_probs=ErrorProbs(),
                          feedback=cfg.feedback, feedback_max_rounds=cfg.feedback_max_rounds,
                          clip_max_norm=cfg.clip_max_norm, amp_dtype=amp_dtype)
    training_args = json.loads(cfg.model_dump_json())
    fingerprint = dataset_fingerprint(train_set)
    metrics_path = out / METRICS_FILE
    if parallel.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "train_config.json", cfg.model_dump_json(indent=2))
    log(f"training '{mc.preset}' on {len(train_set)} images ({schema.name}, "
        f"{schema.num_keypoints} keypoints) on {device}"
        + (f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else "")
        + (f" x {parallel.world} processes (batch {cfg.batch_size} each)"
           if parallel.active else "")
        + (" with bf16 autocast" if amp_dtype else "") + f", epochs {start_epoch}..{cfg.epochs - 1}")

    epoch, record = start_epoch - 1, None
    for epoch in range(start_epoch, cfg.epochs):
        if parallel.any(deadline is not None and time.monotonic() > deadline):
            log(f"--max-minutes {cfg.max_minutes} reached before epoch {epoch}")
            epoch -= 1
            break
        train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        stats = train_one_epoch(model, criterion, train_loader, optimizer, scheduler, device,
                                epoch, schema, noise_gen, options, deadline=deadline,
                                progress=cfg.progress and parallel.main,
                                max_steps=cfg.max_steps_per_epoch, feature_cache=feature_cache,
                                ema=ema, parallel=parallel)
        parallel.sync_buffers(model)
        parallel.check_same_weights(model)
        if feature_cache is not None:
            stats["feature_cache"] = {"items": len(feature_cache), "hits": feature_cache.hits,
                                      "misses": feature_cache.misses,
                                      "mb": round(feature_cache.bytes / 2**20, 1)}
        if deadline is not None and stats["seconds"] > 0:
            # The time limit, not the epoch count, ends this run: lower the lr in time.
            # Process 0's clock: every process must drop the lr at the same step.
            fit_schedule_to_deadline(scheduler, scheduler.last_epoch,
                                     stats["steps"] / stats["seconds"],
                                     parallel.from_main(deadline - time.monotonic()))
        record = {"epoch": epoch, "train": stats, "lr": optimizer.param_groups[-1]["lr"],
                  "elapsed_s": time.monotonic() - started, "processes": parallel.world}
        if val_loader is not None:
            results = predict_loader(evaluated(model, ema), val_loader, device, amp_dtype,
                                     cfg.progress,
                                     category_id=val_set.index.category_id)
            record["val"] = evaluate_ap_on(val_set, results, schema)
            score = record["val"]["stats"]["AP"]
        else:
            score = -stats["losses"].get("loss", float("inf"))
        improved = best is None or score > best
        if improved:
            best = score
        record["best"] = best
        if parallel.main:
            _save_epoch(out, record, evaluated(model, ema), optimizer, scheduler, generators,
                        improved, training_args, fingerprint,
                        online_weights=None if ema is None else model)
        parallel.barrier()  # the others go on once the epoch is saved
        ap = f", val AP {record['val']['stats']['AP']:.4f}" if "val" in record else ""
        log(f"epoch {epoch}: loss {stats['losses'].get('loss', float('nan')):.4f}{ap}, "
            f"{stats['images_per_s']:.1f} images/s")
        if stats["stopped_early"] and parallel.any(
                deadline is not None and time.monotonic() > deadline):
            log(f"--max-minutes {cfg.max_minutes} reached during epoch {epoch}")
            break

    click_prior = None
    if parallel.main and cfg.click_prior_images and record is not None:
        click_prior = fit_run_click_priors(out, cfg.data, cfg.click_prior_images, device, log,
                                           cfg.skip_bad)
    parallel.barrier()
    return {"out": str(out), "last": str(last_dir), "best": str(best_dir),
            "last_epoch": epoch, "best_metric": best, "click_prior": click_prior,
            "best_metric_name": "val AP" if val_set is not None else "minus train loss",
            "last_record": record,
            "history": _read_jsonl(metrics_path), "main": parallel.main}


def fit_run_click_priors(out: Path, data: Path, images: int, device: torch.device, log,
                         skip_bad: bool = False) -> dict:
    """Fit and store the click prior of the run's last/ and best/ checkpoints (once when
    they hold the same weights) on `images` training images, pooled with the prior they
    inherited (from --init) if any, not with an earlier fit of their own (a run resumed
    after it ended); returns what was fitted."""
    from clickpose.model.checkpoint import attach_click_prior, load_model
    from clickpose.train.click_prior_fit import fit_click_prior

    started = time.monotonic()
    priors: dict[str, tuple] = {}  # weights' hash -> (fitted, inherited)
    report = {}
    for name in ("last", "best"):
        folder = out / name
        if not (folder / "config.json").exists():
            continue
        sha = read_checkpoint_config(folder)["weights_sha256"]
        if sha not in priors:
            inherited = read_inherited_click_prior(folder)
            model = load_model(folder, device=device)
            priors[sha] = (fit_click_prior(model, data, images, skip_bad=skip_bad,
                                           inherited=inherited), inherited)
        fitted, inherited = priors[sha]
        attach_click_prior(folder, fitted, inherited)
        report[name] = {"persons_labelled": fitted.persons_labelled,
                        "persons_predicted": fitted.persons_predicted}
    report["seconds"] = round(time.monotonic() - started, 1)
    log(f"click prior fitted on {images} training images at most "
        f"({report['seconds']:.1f} s)")
    return report


def _save_epoch(out: Path, record: dict, weights: torch.nn.Module, optimizer, scheduler,
                generators: dict, improved: bool, training_args: dict, fingerprint: dict,
                online_weights: torch.nn.Module | None) -> None:
    """The epoch's line in metrics.jsonl, last/ (checkpoint + training state) and, when the
    epoch improved, best/. `weights` is what the run evaluates (the moving average when it
    keeps one; `online_weights` then are what the optimizer steps)."""
    last_dir, best_dir = out / "last", out / "best"
    _write_epoch_record(out / METRICS_FILE, record)
    metrics = {"epoch": record["epoch"], "train_loss": record["train"]["losses"].get("loss")}
    if "val" in record:
        metrics["val"] = record["val"]["stats"]
    save_checkpoint(last_dir, weights, metrics, training_args, fingerprint)
    # The state names the weights it belongs to: a run stopped between the two writes
    # leaves weights one epoch ahead of their optimizer state, which --resume refuses.
    sha = read_checkpoint_config(last_dir)["weights_sha256"]
    save_training_state(last_dir, optimizer, scheduler, record["epoch"], generators,
                        {"best": record["best"], "weights_sha256": sha},
                        online_weights=online_weights)
    if improved:
        save_checkpoint(best_dir, weights, metrics, training_args, fingerprint)


def _resume_average(model, online: dict, decay: float | None, last: Path):
    """On --resume: `last` holds the average when the run kept one, and the training state
    the online weights, which `model` takes; the average starts from `last`'s weights."""
    if decay is None:
        if online:
            raise CheckpointError(
                f"{last}: the run kept a moving average of its weights; resume it with "
                "--ema-decay (its train_config.json names the value)")
        return None
    if not online:
        raise CheckpointError(
            f"{last}: the run kept no moving average, so its state holds no online weights "
            f"to continue with --ema-decay; resume it without the option, or "
            f"{no_resume_advice(last)}")
    ema = build_ema(model, decay)  # a copy of the model, which holds last's weights now
    model.load_state_dict(online)
    return ema


def _check_state_fits_weights(last: Path, state: dict) -> None:
    """Refuse a training state saved for other weights than `last`'s (states written before
    the state named its weights are taken as they are)."""
    expected = state["extra"].get("weights_sha256")
    if expected is not None and expected != read_checkpoint_config(last)["weights_sha256"]:
        raise CheckpointError(
            f"{last}: model.safetensors is not the one training_state.json was saved with (the "
            f"run stopped between the two writes after epoch {state['epoch'] + 1}), so the "
            f"optimizer state of these weights is lost; {no_resume_advice(last)}")


def resumable_epoch(out: str | Path) -> int | None:
    """The epoch a --resume of `out` would start at, or None when there is nothing to resume."""
    last = Path(out) / "last"
    try:
        checkpoint_folder(last)
    except CheckpointError:
        return None
    state = last / "training_state.json"
    if not state.is_file():
        return None
    try:
        return int(json.loads(state.read_text())["epoch"]) + 1
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"{state}: field 'epoch' cannot be read ({type(e).__name__}: {e}); the training "
            f"state is damaged; {no_resume_advice(last)}") from None
