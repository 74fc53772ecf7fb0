"""`clickpose synth --out DIR --images N --seed S`: draw a synthetic-people dataset folder."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from clickpose.cli.main import app
from clickpose.cli.output import fail
from clickpose.keypoints import EXTRA_KEYPOINTS, SchemaError

EXTRA_HELP = ("keypoints beyond COCO-17, repeated or comma separated: "
              + ", ".join(EXTRA_KEYPOINTS))


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Option("--out", help="dataset folder to create "
                                      "(annotations.json + images/)")],
    images: Annotated[int, typer.Option("--images", min=0, help="number of images")],
    seed: Annotated[int, typer.Option("--seed", min=0, help="random seed; same arguments + seed "
                                      "give byte-identical files")] = 0,
    style: Annotated[str, typer.Option("--style", help="photo (in domain) or art "
                                       "(out-of-domain cartoon)")] = "photo",
    extra_keypoints: Annotated[list[str] | None, typer.Option("--extra-keypoints",
                                                              help=EXTRA_HELP)] = None,
    max_persons: Annotated[int, typer.Option("--max-persons", min=1,
                                             help="persons per image: 1..K")] = 4,
    size: Annotated[int, typer.Option("--size", min=32, help="image side in pixels")] = 256,
    image_format: Annotated[str, typer.Option("--format", help="jpg (quality 90) or png")
                            ] = "jpg",
    overwrite: Annotated[bool, typer.Option("--overwrite",
                                            help="replace an existing folder")] = False,
) -> None:
    """Draw multi-person scenes of articulated figures with exact COCO keypoints."""
    from clickpose.data.synthetic import generate_dataset

    console = Console(highlight=False, stderr=True)
    extra = [name.strip() for value in extra_keypoints or [] for name in value.split(",")
             if name.strip()]
    start = time.perf_counter()
    try:
        folder = generate_dataset(out, images, seed, style=style, extra_keypoints=tuple(extra),
                                  max_persons=max_persons, size=size, progress=True,
                                  image_format=image_format, overwrite=overwrite)
    except (ValueError, SchemaError, FileExistsError) as e:
        fail(console, e)
    seconds = time.perf_counter() - start
    persons = len(json.loads((folder / "annotations.json").read_text())["annotations"])
    console.print(f"wrote {images} images, {persons} persons to {folder} "
                  f"in {seconds:.1f} s ({images / max(seconds, 1e-9):.1f} images/s)")
