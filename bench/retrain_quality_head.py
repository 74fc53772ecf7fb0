"""Train only the pose-quality head of a checkpoint, on its frozen network, and measure it.

    .venv/bin/python bench/retrain_quality_head.py --checkpoint RUN/last --out DIR
        [--data TRAIN_DIR] [--val VAL_DIR] [--epochs 3] [--threads N]

The head reads detached decoder outputs (clickpose.model.pose_quality), so a network trained
with one version of it can be given another, trained alone: an A/B of two rankings on the
same poses, in minutes instead of a 30-minute run. The network's weights are taken as they
are; the head is the current code's, trained from its initialisation with flip
augmentation (as the bench trains) and saved as DIR/last. Prints JSON lines: the machine,
each epoch's loss, then the AP and NoC of bench/train_synthetic.py on --val.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluation import emit, evaluate_checkpoint
from bench.latency import machine
from bench.synthetic_sets import train_images, val_images
from clickpose.data import collate_batch, load_coco_dataset
from clickpose.data.transforms import flip_resize_transforms
from clickpose.model.checkpoint import (
    build_from_config,
    read_checkpoint_config,
    read_weights,
    save_checkpoint,
)
from clickpose.model.criterion import normalize_targets
from clickpose.model.matcher import PaddedTargets
from clickpose.model.pose_quality import quality_loss
from clickpose.train.loop import default_cpu_threads

HEAD = "pose_quality."


def network_with_fresh_head(checkpoint: Path):
    """The checkpoint's model with the current code's head at its initialisation."""
    model = build_from_config(read_checkpoint_config(checkpoint), "cpu")
    if model.pose_quality is None:
        raise SystemExit(f"{checkpoint}: its config has pose_quality off; nothing to train")
    network = {k: v for k, v in read_weights(checkpoint).items() if not k.startswith(HEAD)}
    missing, unexpected = model.load_state_dict(network, strict=False)
    if unexpected or any(not k.startswith(HEAD) for k in missing):
        raise SystemExit(f"{checkpoint}: the network's weights do not fit its config")
    return model.eval()


def train_head(model, data: Path, epochs: int, lr: float, batch_size: int) -> None:
    dataset = load_coco_dataset(data)
    config = model.config
    dataset.transforms = flip_resize_transforms(dataset.schema, config.image_size,
                                                config.max_size, mean=config.pixel_mean,
                                                std=config.pixel_std)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate_batch,
                        generator=torch.Generator().manual_seed(0))
    sigmas = torch.tensor(dataset.schema.sigmas, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.pose_quality.parameters(), lr, weight_decay=1e-4)
    started = time.perf_counter()
    for epoch in range(epochs):
        total = 0.0
        for images, mask, targets in loader:
            with torch.no_grad():
                state = model.encode(images, mask)
                outputs = model.decode_keypoints(state, model.detect_humans(state))
            padded = PaddedTargets.of(normalize_targets(targets))
            loss = quality_loss(model.quality_logits(state, outputs), outputs["pred_keypoints"],
                                padded, sigmas, outputs["pred_logits"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        emit({"kind": "epoch", "epoch": epoch, "loss": round(total / len(loader), 4),
              "elapsed_s": round(time.perf_counter() - started, 1)})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None,
                        help="default: the synthetic bench's training images (seed 1)")
    parser.add_argument("--val", type=Path, default=None,
                        help="default: the synthetic bench's val images (seed 1001)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    args.data = args.data or train_images()
    args.val = args.val or val_images()
    torch.set_num_threads(args.threads or default_cpu_threads(0))
    torch.manual_seed(0)
    emit({**machine("cpu"), "checkpoint": str(args.checkpoint), "epochs": args.epochs})
    model = network_with_fresh_head(args.checkpoint)
    train_head(model, args.data, args.epochs, args.lr, args.batch_size)
    save_checkpoint(args.out / "last", model, {"head_retrained_epochs": args.epochs},
                    training={"network_from": str(args.checkpoint)})
    evaluate_checkpoint(args.out / "last", args.val)


if __name__ == "__main__":
    main()
