"""`clickpose predict`: COCO keypoint results of a checkpoint on a dataset folder."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from clickpose.cli.main import app
from clickpose.cli.output import fail

Opt = typer.Option


@app.command("predict")
def predict_command(
    checkpoint: Annotated[Path, Opt(
        "--checkpoint", help="checkpoint folder (or its model.safetensors)")],
    data: Annotated[Path, Opt("--data", help="dataset folder (annotations.json + images/)")],
    out: Annotated[Path, Opt("--out", help="COCO results json to write")],
    batch_size: Annotated[int, Opt("--batch-size", min=1)] = 4,
    device: Annotated[str | None, Opt(
        "--device", help="cpu | cuda (default: cuda if present)")] = None,
    max_persons: Annotated[int | None, Opt(
        "--max-persons", help="keep the N best-scored persons per image")] = None,
    workers: Annotated[int, Opt("--workers", min=0)] = 0,
    flip_test: Annotated[bool, Opt(
        "--flip-test", help="average each pose with the one decoded on the mirrored image "
                            "(about twice the time)")] = False,
) -> None:
    """Predict every image of a dataset folder; write COCO keypoint results (atomically)."""
    from clickpose.data.errors import DataError
    from clickpose.keypoints import SchemaError
    from clickpose.model.checkpoint import CheckpointError
    from clickpose.train.predict import predict_folder

    console = Console(highlight=False)
    try:
        results = predict_folder(checkpoint, data, out, batch_size=batch_size, device=device,
                                 max_persons=max_persons, workers=workers,
                                 flip_test=flip_test)
    except (DataError, SchemaError, CheckpointError) as e:
        fail(console, e)
    console.print(f"wrote {len(results)} persons to {out}")
