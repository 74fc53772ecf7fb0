"""Click round trip through the annotator's HTTP API, on a real uvicorn server.

    .venv/bin/python bench/annotator_latency.py [--clicks 50] [--persons 3] [--size 640]
        [--threads 1]

Starts `python -m clickpose.annotator` on a task of synthetic images pre-labelled by an
untrained tiny model (the timing is what counts), opens one image, and times POST .../click
(request, session.click for every person, JSON answer), and the first open of the image
(backbone and encoder). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import torch

from clickpose.annotator.prelabel import prelabel, task_images_from_files
from clickpose.annotator.serve import launch
from clickpose.annotator.task import create_task
from clickpose.data.synthetic import generate_dataset
from clickpose.keypoints import coco17
from clickpose.model import build_model, preset_config
from clickpose.model.checkpoint import save_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clicks", type=int, default=50)
    parser.add_argument("--persons", type=int, default=3)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--preset", default="tiny")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="annotator-latency-"))
    torch.manual_seed(0)
    model = build_model(preset_config(args.preset), coco17()).eval()
    save_checkpoint(root / "checkpoint", model)
    data = generate_dataset(root / "data", 1, seed=0, size=args.size, progress=False)
    images = task_images_from_files(sorted((data / "images").iterdir()))
    prelabels = {im.id: prelabel(model, im.filepath, 0.0, args.persons) for im in images}
    create_task(root / "task", images, prelabels, coco17(), checkpoint=root / "checkpoint")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = launch(root / "task", port=port)
    try:
        client = httpx.Client(base_url=server.url, timeout=30)
        image = images[0].id
        start = time.perf_counter()
        client.post(f"/api/images/{image}/open").raise_for_status()
        open_ms = 1000 * (time.perf_counter() - start)   # backbone + encoder, once per image
        times = []
        for i in range(args.clicks + 3):
            start = time.perf_counter()
            client.post(f"/api/images/{image}/click", json={
                "person": i % args.persons, "keypoint": i % 17,
                "x": 10.0 + i % 50, "y": 20.0 + i % 40}).raise_for_status()
            times.append(1000 * (time.perf_counter() - start))
        times = sorted(times[3:])   # the first clicks warm the allocator
        print(json.dumps({
            "machine": platform.processor() or platform.machine(), "preset": args.preset,
            "image": f"{args.size}x{args.size}", "persons": args.persons,
            "clicks": args.clicks, "median_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
            "max_ms": round(times[-1], 1), "open_ms": round(open_ms, 1)}))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
