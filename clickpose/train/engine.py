"""One training epoch and one evaluation pass (the DETR `engine.py`)."""
from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from clickpose.keypoints import KeypointSchema
from clickpose.model.criterion import SetCriterion, normalize_targets
from clickpose.model.pose_errors import ErrorProbs, build_dn_queries
from clickpose.train.distributed import Distributed
from clickpose.train.feature_cache import BackboneFeatureCache
from clickpose.train.feedback import feedback_losses


@dataclass
class StepOptions:
    dn_groups: int = 2                 # noised copies of each ground-truth pose per step
    error_probs: ErrorProbs = field(default_factory=ErrorProbs)
    box_noise_scale: float = 0.4
    feedback: bool = True              # human-feedback rounds
    feedback_max_rounds: int | None = None
    clip_max_norm: float = 0.1
    amp_dtype: torch.dtype | None = None  # torch.bfloat16 on CUDA


def targets_to(targets: list[dict], device: torch.device) -> list[dict]:
    return [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
            for t in targets]


def clip_gradients(model, max_norm: float) -> None:
    """Clip the network's gradient norm to `max_norm`. The pose-quality head reads detached
    features, so it is clipped on its own: its gradients never shrink the network's step."""
    head = getattr(model, "pose_quality", None)
    own = {id(p) for p in head.parameters()} if head is not None else set()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if id(p) not in own], max_norm,
                                   foreach=True)
    if head is not None:
        torch.nn.utils.clip_grad_norm_(head.parameters(), max_norm, foreach=True)


def compute_losses(model, criterion: SetCriterion, images, mask, targets: list[dict],
                   schema: KeypointSchema, generator: torch.Generator,
                   options: StepOptions, feature_cache: BackboneFeatureCache | None = None
                   ) -> dict[str, torch.Tensor]:
    """The weighted losses of one batch: normal output, denoising queries, feedback rounds.
    `feature_cache`: where the batch's backbone features come from, when the backbone is frozen."""
    dn, dn_meta = (None, None)
    if options.dn_groups > 0:
        dn, dn_meta = build_dn_queries(targets, schema, generator, options.dn_groups,
                                       options.error_probs, options.box_noise_scale)
    device_type = images.device.type
    with torch.autocast(device_type, dtype=options.amp_dtype or torch.float32,
                        enabled=options.amp_dtype is not None):
        features = None if feature_cache is None else \
            feature_cache.features(model.backbone, images, mask, targets)
        state = model.encode(images, mask, features)
        humans = model.detect_humans(state)
        outputs = model.decode_keypoints(state, humans, dn=dn)
        if model.pose_quality is not None:  # learnt on the normal output, not feedback rounds
            outputs["pred_quality"] = model.quality_logits(state, outputs)
        tn = normalize_targets(targets)
        losses = criterion(outputs, tn, dn_targets=dn_meta, normalized=True)
        if options.feedback:
            losses.update(feedback_losses(model, criterion, state, humans, outputs, tn, generator,
                                          max_rounds=options.feedback_max_rounds))
    return losses


def train_one_epoch(model, criterion: SetCriterion, loader: DataLoader,
                    optimizer: torch.optim.Optimizer, scheduler, device: torch.device,
                    epoch: int, schema: KeypointSchema, generator: torch.Generator,
                    options: StepOptions, deadline: float | None = None,
                    progress: bool = True, max_steps: int | None = None,
                    feature_cache: BackboneFeatureCache | None = None, ema=None,
                    parallel: Distributed | None = None) -> dict:
    """Train over `loader` once (or until `deadline`, a time.monotonic() value, or
    `max_steps`), updating `ema` (clickpose.train.ema) after each step. Returns mean losses,
    the step count, images/s and whether it stopped early.
    With `parallel` (clickpose.train.distributed), `loader` is this process's share:
    gradients are averaged and stops agreed with the other processes, and the figures
    returned are all the processes' together."""
    parallel = parallel or Distributed()
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    criterion.train()
    sums: dict[str, float] = defaultdict(float)
    steps, images_seen, skipped = 0, 0, 0
    stopped_early = False
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", disable=not progress,
               dynamic_ncols=True, leave=False)
    for images, mask, targets in bar:
        if parallel.any((deadline is not None and time.monotonic() > deadline)
                        or (max_steps is not None and steps >= max_steps)):
            stopped_early = True
            break
        images, mask = images.to(device, non_blocking=True), mask.to(device, non_blocking=True)
        targets = targets_to(targets, device)
        losses = compute_losses(model, criterion, images, mask, targets, schema, generator,
                                options, feature_cache)
        loss = sum(losses.values())
        if parallel.any(not math.isfinite(loss.item())):
            # A diverged batch would poison the weights: skip it and say so in the log.
            skipped += 1
            optimizer.zero_grad(set_to_none=True)
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parallel.average_gradients(trainable)
        if options.clip_max_norm > 0:
            clip_gradients(model, options.clip_max_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:  # the scheduler counts the run's steps, resumed ones included
            ema.update(model, step=None if scheduler is None else scheduler.last_epoch)
        steps += 1
        images_seen += len(images)
        sums["loss"] += loss.item()
        for name, value in losses.items():
            sums[name] += value.item()
        bar.set_postfix(loss=f"{sums['loss'] / steps:.3f}",
                        lr=f"{optimizer.param_groups[-1]['lr']:.1e}")
    bar.close()
    elapsed = parallel.from_main(time.perf_counter() - start)
    sums = parallel.sum({**sums, "_images": images_seen, "_skipped": skipped})
    images_seen, skipped = int(sums.pop("_images")), int(sums.pop("_skipped"))
    means = {k: v / max(steps * parallel.world, 1) for k, v in sums.items()}
    return {"losses": means, "steps": steps, "images": images_seen, "skipped_batches": skipped,
            "seconds": elapsed, "images_per_s": images_seen / elapsed if elapsed > 0 else 0.0,
            "stopped_early": stopped_early}


def _cpu_outputs(outputs: dict) -> dict:
    keys = ("pred_logits", "pred_boxes", "pred_keypoints", "pred_visibility", "pred_scores")
    return {k: outputs[k].detach().float().cpu() for k in keys if k in outputs}


@torch.no_grad()
def predict_loader(model, loader: DataLoader, device: torch.device,
                   amp_dtype: torch.dtype | None = None, progress: bool = True,
                   category_id: int = 1, max_persons: int | None = None) -> list[dict]:
    """COCO keypoint results of every image of an eval loader (orig_size pixels)."""
    model.eval()
    results: list[dict] = []
    for images, mask, targets in tqdm(loader, desc="predict", unit="batch",
                                      disable=not progress, leave=False):
        images, mask = images.to(device), mask.to(device)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            outputs = model(images, mask)
        sizes = [tuple(int(v) for v in t["orig_size"]) for t in targets]
        for poses, t in zip(model.postprocess(_cpu_outputs(outputs), sizes), targets):
            if max_persons is not None:
                poses = poses.select(slice(0, max_persons))
            results.extend(poses.to_coco_results(int(t["image_id"]), category_id))
    return results


def evaluate_ap_on(dataset, results: list[dict], schema: KeypointSchema) -> dict:
    """OKS AP/AR of COCO results against the dataset's ground truth (clickpose.evaluate)."""
    from clickpose.evaluate.ap import evaluate_ap

    return evaluate_ap(dataset.coco.dataset, results, schema).to_dict()
