"""Latency of one interactive click against a full prediction, per preset.

Prints one JSON line with the machine, then one per preset:
    .venv/bin/python bench/latency.py [--presets tiny lite0] [--size 512] [--persons 5]
        [--clicks 30] [--predictions 10] [--input-size PX] [--threads N] [--device cpu|cuda]
        [--click-prior CHECKPOINT]

The image is rendered (stick figures on a textured background) and the models are
untrained: only the timing means something. A click re-runs the keypoint decoder for
every person; a full prediction runs backbone, encoder, human detection and decoder.
With --click-prior, each preset is timed again with that checkpoint's click prior in its
sessions (the reseeding and error propagation a clicked person gets).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clickpose.keypoints import coco17
from clickpose.model import build_model, preset_config
from clickpose.poses import Poses

# A standing person in a unit box (x right, y down), COCO-17 order.
TEMPLATE = np.array([
    [0.50, 0.08], [0.46, 0.06], [0.54, 0.06], [0.42, 0.08], [0.58, 0.08],
    [0.35, 0.22], [0.65, 0.22], [0.28, 0.38], [0.72, 0.38], [0.25, 0.52], [0.75, 0.52],
    [0.40, 0.55], [0.60, 0.55], [0.40, 0.76], [0.60, 0.76], [0.40, 0.97], [0.60, 0.97],
])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str) -> dict:
    info = {"kind": "machine", "cpu": cpu_model(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": device,
            "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def render_people(size: int, persons: int, seed: int = 0) -> tuple[np.ndarray, Poses]:
    """A size x size image with `persons` stick figures, and their exact poses."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 120, (size // 8, size // 8, 3), dtype=np.uint8)
    image = Image.fromarray(background).resize((size, size), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    skeleton = coco17().skeleton
    keypoints, boxes = [], []
    for p in range(persons):
        h = rng.uniform(0.35, 0.6) * size
        w = 0.45 * h
        x0 = (p + 0.5) * size / persons - w / 2 + rng.uniform(-10, 10)
        y0 = rng.uniform(0.05 * size, size - h - 0.05 * size)
        kp = TEMPLATE * [w, h] + [x0, y0]
        color = tuple(int(c) for c in rng.integers(150, 255, 3))
        for a, b in skeleton:
            draw.line([tuple(kp[a]), tuple(kp[b])], fill=color, width=max(2, int(w / 12)))
        keypoints.append(kp)
        boxes.append([kp[:, 0].min(), kp[:, 1].min(), kp[:, 0].max(), kp[:, 1].max()])
    poses = Poses(np.array(keypoints), np.ones((persons, 17)), np.full((persons, 17), 2),
                  np.array(boxes), np.linspace(0.95, 0.6, persons))
    return np.asarray(image).copy(), poses


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_preset(name: str, image: np.ndarray, poses: Poses, clicks: int, predictions: int,
                device: str, input_size: int | None = None, seed: int = 0,
                click_prior=None) -> dict:
    """`click_prior`: a ClickPrior the sessions apply (a checkpoint's: its cost does not
    depend on the weights)."""
    torch.manual_seed(seed)
    sizes = {} if input_size is None else {"image_size": input_size,
                                           "max_size": max(input_size, 768)}
    model = build_model(preset_config(name, **sizes), coco17()).to(device).eval()
    model.click_prior = click_prior
    model.predict(image)  # warm-up
    predict_ms = []
    for _ in range(predictions):
        _sync(device)
        start = time.perf_counter()
        model.predict(image)
        _sync(device)
        predict_ms.append((time.perf_counter() - start) * 1000)

    _sync(device)
    start = time.perf_counter()
    session = model.session(image, initial_poses=poses)
    _sync(device)
    open_ms = (time.perf_counter() - start) * 1000
    rng = np.random.default_rng(seed)
    session.click(0, 0, *poses.keypoints[0, 0])  # warm-up
    click_ms = []
    for _ in range(clicks):
        person, k = int(rng.integers(poses.num_persons)), int(rng.integers(17))
        x, y = poses.keypoints[person, k] + rng.normal(0, 3, 2)
        _sync(device)
        start = time.perf_counter()
        session.click(person, k, float(x), float(y))
        _sync(device)
        click_ms.append((time.perf_counter() - start) * 1000)
    predict_median = statistics.median(predict_ms)
    click_median = statistics.median(click_ms)
    return {
        "kind": "latency", "preset": name, "image": list(image.shape[:2]),
        "persons": poses.num_persons, "model_input": _input_size(model, image),
        "predict_ms_median": round(predict_median, 2),
        "session_open_ms": round(open_ms, 2),
        "click_ms_median": round(click_median, 2),
        "click_ms_p90": round(float(np.percentile(click_ms, 90)), 2),
        "speedup": round(predict_median / click_median, 2),
        "clicks": clicks, "predictions": predictions, "click_prior": click_prior is not None,
    }


def _input_size(model, image: np.ndarray) -> list[int]:
    from clickpose.model.inference import resized_size

    return list(resized_size(*image.shape[:2], model.config.image_size, model.config.max_size))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "lite0"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--persons", type=int, default=5)
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--predictions", type=int, default=10)
    parser.add_argument("--input-size", type=int, default=None,
                        help="model input (shorter side); default: each preset's own test size")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--click-prior", default=None, metavar="CHECKPOINT",
                        help="also time each preset's clicks with this checkpoint's click prior")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [machine(args.device)]
    print(json.dumps(rows[0]), flush=True)
    image, poses = render_people(args.size, args.persons)
    priors = [None]
    if args.click_prior:
        from clickpose.model.checkpoint import read_click_prior

        priors.append(read_click_prior(args.click_prior))
    for name in args.presets:
        for prior in priors:
            row = time_preset(name, image, poses, args.clicks, args.predictions, args.device,
                              args.input_size, click_prior=prior)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
