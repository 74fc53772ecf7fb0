"""Time the training step that bounds a time-limited CPU run: the `tiny` preset on synthetic
`photo` images, as `bench/train_synthetic.py` trains it (frozen backbone with its features
cached, flip only, one denoising group, feedback rounds).

    .venv/bin/python bench/train_step.py [--steps 50] [--warmup 25] [--repeats 3]
        [--batch-size 8] [--threads 2] [--images 200] [--size 256] [--cache work/bench_synth]
        [--device cpu|cuda] [--compile off|default|reduce-overhead]
        [--model-option NAME=VALUE ...] [--stages]

The 25 batches are drawn once and their backbone features cached before timing, so the
figure is the transformer's step alone: forward and losses, backward, gradient clipping and
the AdamW update. Each repeat times `--steps` steps cycling over the batches (a multiple of
25 gives every repeat the same batches: their person counts vary); prints JSON lines: the
machine, each repeat (seconds per step, images/s, each phase's share) and the median. The
process's CPU time per step beside the wall time says, on a GPU, how much of a step is the
host's. `--compile` hands each transformer layer (encoder, human and keypoint decoders) to
torch.compile; the warm-up steps hold its compilation and recompiles. `--model-option`
changes a field of the preset (as `bench/train_synthetic.py` does), to time what an option
costs a step before a 30-minute run spends on it. `--stages` adds each forward stage's
milliseconds per step to the repeats (encoder, human decoder, keypoint decoder with the
feedback rounds' decodes, losses with the matching, feedback rounds as a whole): where the
forward pass's time goes; backward passes are not split.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluation import emit
from bench.latency import machine
from bench.model_options import check_preset_options, parse_model_option
from bench.synthetic_sets import CACHE, TRAIN_SEED, cached_dataset
from clickpose.data import collate_batch, load_coco_dataset
from clickpose.data.transforms import flip_resize_transforms
from clickpose.model import build_model
from clickpose.model.criterion import SetCriterion
from clickpose.model.pose_errors import ErrorProbs
from clickpose.model.presets import preset_config
from clickpose.train import engine
from clickpose.train.engine import StepOptions, clip_gradients, compute_losses, targets_to
from clickpose.train.feature_cache import BackboneFeatureCache
from clickpose.train.optim import build_optimizer

PHASES = ("forward_and_losses", "backward", "clip_and_update")
BATCHES = 25
# Forward stages timed by --stages: (label, the rig's attribute that owns the method, or
# None for the training engine's module function, the method's name).
STAGES = (("encode", "model", "encode"), ("detect_humans", "model", "detect_humans"),
          ("decode_keypoints", "model", "decode_keypoints"),
          ("losses", "criterion", "forward"), ("feedback_rounds", None, "feedback_losses"))


class StepRig:
    """A model, its optimizer and a fixed list of batches whose features are cached."""

    def __init__(self, folder: Path, batch_size: int, batches: int, seed: int = 0,
                 device: str = "cpu", compile_mode: str = "off",
                 model_options: dict | None = None):
        torch.manual_seed(seed)
        self.device = torch.device(device)
        dataset = load_coco_dataset(folder, seed=seed)
        self.schema = dataset.schema
        self.model = build_model(preset_config("tiny", self.schema.num_keypoints,
                                               **(model_options or {})), self.schema)
        config = self.model.config
        dataset.transforms = flip_resize_transforms(self.schema, config.image_size,
                                                    config.max_size, mean=config.pixel_mean,
                                                    std=config.pixel_std)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate_batch,
                            generator=torch.Generator().manual_seed(seed))
        self.batches = [(images.to(self.device), mask.to(self.device),
                         targets_to(targets, self.device))
                        for _, (images, mask, targets) in zip(range(batches), loader)]
        self.model.to(self.device)
        if compile_mode != "off":
            compile_layers(self.model, compile_mode)
        self.criterion = SetCriterion(self.schema).to(self.device)
        # The synthetic bench's peak lr; weight decay and the backbone's multiplier as it trains.
        self.optimizer = build_optimizer(self.model, lr=1.6e-3)
        self.cache = BackboneFeatureCache()
        # bf16 autocast on CUDA, as the training loop runs there.
        self.options = StepOptions(dn_groups=1, error_probs=ErrorProbs(),
                                   amp_dtype=torch.bfloat16 if self.device.type == "cuda"
                                   else None)
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.model.train()
        with torch.no_grad():
            for images, mask, targets in self.batches:
                self.cache.features(self.model.backbone, images, mask, targets)
        self.stage_seconds: dict[str, float] | None = None

    @contextlib.contextmanager
    def stages_timed(self):
        """Within the block, each forward stage's seconds add up in `stage_seconds` (a stage
        called inside another, e.g. the feedback rounds' decodes, counts in both)."""
        self.stage_seconds = {label: 0.0 for label, _, _ in STAGES}
        wrapped = []
        for label, owner, name in STAGES:
            target = engine if owner is None else getattr(self, owner)
            original = getattr(target, name)
            wrapped.append((target, name, original))
            setattr(target, name, self._timed(label, original))
        try:
            yield
        finally:
            for target, name, original in reversed(wrapped):
                if target is engine:
                    setattr(target, name, original)
                else:  # the instance attribute goes; the class's method shows again
                    delattr(target, name)
            self.stage_seconds = None

    def _timed(self, label: str, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            started = self._now()
            try:
                return function(*args, **kwargs)
            finally:
                self.stage_seconds[label] += self._now() - started
        return timed

    def step(self, index: int) -> dict[str, float]:
        """One training step on batch `index` (cycling); seconds per phase."""
        images, mask, targets = self.batches[index % len(self.batches)]
        times = [self._now()]
        losses = compute_losses(self.model, self.criterion, images, mask, targets, self.schema,
                                self.generator, self.options, self.cache)
        loss = sum(losses.values())
        times.append(self._now())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        times.append(self._now())
        clip_gradients(self.model, self.options.clip_max_norm)
        self.optimizer.step()
        times.append(self._now())
        return {phase: times[i + 1] - times[i] for i, phase in enumerate(PHASES)}

    def _now(self) -> float:
        # A GPU runs ahead of the host: wait for it, so that each phase is its own time.
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


def compile_layers(model, mode: str) -> None:
    """torch.compile each transformer layer, for measuring what fused kernels buy (on an
    H200 nothing: the host's time is elsewhere; docs/measurements.md, "On a GPU")."""
    for layers in (model.encoder.layers, model.human_decoder.layers,
                   model.keypoint_decoder.layers):
        for layer in layers:
            layer.compile(mode=mode)


def time_steps(rig: StepRig, first: int, steps: int, batch_size: int) -> dict:
    """Wall time per step and phase, and the process's CPU time per step (on a shared
    machine other tenants stretch the wall time; the CPU time moves less with them)."""
    totals = dict.fromkeys(PHASES, 0.0)
    if rig.stage_seconds is not None:
        rig.stage_seconds = dict.fromkeys(rig.stage_seconds, 0.0)
    cpu_start = time.process_time()
    for i in range(first, first + steps):
        for phase, seconds in rig.step(i).items():
            totals[phase] += seconds
    cpu = time.process_time() - cpu_start
    total = sum(totals.values())
    record = {"kind": "repeat", "steps": steps, "s_per_step": round(total / steps, 4),
              "cpu_s_per_step": round(cpu / steps, 4),
              "images_per_s": round(steps * batch_size / total, 2),
              "shares": {phase: round(seconds / total, 3) for phase, seconds in totals.items()}}
    if rig.stage_seconds is not None:
        record["forward_stage_ms_per_step"] = {
            label: round(1000 * seconds / steps, 1) for label, seconds in rig.stage_seconds.items()}
    return record


def warm_up_and_time(rig: StepRig, args: argparse.Namespace) -> list[dict]:
    """The warm-up steps, then the timed repeats; each emitted as it ends."""
    started = time.perf_counter()
    for i in range(args.warmup):
        rig.step(i)
    emit({"kind": "warmup", "steps": args.warmup, "compile": args.compile,
          "seconds": round(time.perf_counter() - started, 1)})
    repeats = []
    for r in range(args.repeats):
        repeats.append(time_steps(rig, args.warmup + r * args.steps, args.steps, args.batch_size))
        emit(repeats[-1])
    return repeats


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=BATCHES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=200, help="synthetic images to draw from")
    parser.add_argument("--size", type=int, default=256, help="synthetic image size")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda (bf16 autocast, each phase synchronised)")
    parser.add_argument("--compile", default="off",
                        choices=["off", "default", "reduce-overhead"],
                        help="torch.compile mode of the transformer layers")
    parser.add_argument("--model-option", action="append", default=[], metavar="NAME=VALUE",
                        help="a ModelConfig field of the preset changed (value in JSON)")
    parser.add_argument("--stages", action="store_true",
                        help="also time each forward stage (ms per step)")
    args = parser.parse_args(argv)
    options = check_preset_options(
        dict(parse_model_option(text, "--model-option") for text in args.model_option))
    torch.set_num_threads(args.threads)
    emit(machine(args.device))
    folder = cached_dataset(args.cache, args.images, TRAIN_SEED, args.size)
    rig = StepRig(folder, args.batch_size, batches=BATCHES, device=args.device,
                  compile_mode=args.compile, model_options=options)
    with rig.stages_timed() if args.stages else contextlib.nullcontext():
        repeats = warm_up_and_time(rig, args)
    summary = {"kind": "summary", "preset": "tiny", "batch_size": args.batch_size,
               "compile": args.compile, "model_options": options,
               "median_s_per_step": statistics.median(r["s_per_step"] for r in repeats),
               "median_images_per_s": statistics.median(r["images_per_s"] for r in repeats),
               "median_cpu_s_per_step": statistics.median(r["cpu_s_per_step"] for r in repeats)}
    emit(summary)
    return summary


if __name__ == "__main__":
    main()
