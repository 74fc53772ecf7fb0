"""`clickpose check-data DIR`: validate a dataset folder and say what training would use."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from tqdm import tqdm

from clickpose.cli.main import app
from clickpose.cli.output import fail
from clickpose.data.coco import CocoKeypointIndex, load_image, read_coco_dataset
from clickpose.data.errors import DataError, DataIssue
from clickpose.keypoints import SchemaError


@app.command("check-data")
def check_data(
    folder: Annotated[Path, typer.Argument(help="dataset folder: annotations.json + images/")],
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="accept the folder when bad images can be left out (exit 0), as "
        "training with --skip-bad would")] = False,
    decode: Annotated[bool, typer.Option(
        "--decode", help="also decode every image fully (finds truncated files; slower)")] = False,
) -> None:
    """Check every image and annotation; list each problem with its file, ids, field and fix.

    Exit status 1 when the folder cannot be used as it is (or, with --skip-bad, not at all).
    """
    console = Console(highlight=False)
    try:
        index = read_coco_dataset(folder, skip_bad=True, progress=True)
    except (DataError, SchemaError) as e:
        fail(console, e)
    # Training's --skip-bad reads image headers only: it cannot leave out undecodable images.
    undecodable = _decode_all(index) if decode else []
    issues = list(index.report.issues) + undecodable
    console.print(_summary(index))
    for issue in issues:
        console.print(f"[yellow]problem:[/yellow] {escape(str(issue))}", soft_wrap=True)
    if not issues:
        console.print("[green]ok[/green]: no problems found")
        return
    skipped = len(index.report.skipped_image_ids)
    if undecodable:
        console.print(f"[red]{len(issues)} problem(s)[/red]: fix them; {len(undecodable)} "
                      "image(s) cannot be decoded, which --skip-bad does not leave out: replace "
                      "them with the original files")
        raise typer.Exit(1)
    if skip_bad:
        console.print(f"{len(issues)} problem(s); with --skip-bad, {skipped} image(s) are left out")
        return
    console.print(f"[red]{len(issues)} problem(s)[/red]: fix them, or train with --skip-bad to "
                  f"leave out {skipped} image(s)")
    raise typer.Exit(1)


def _decode_all(index: CocoKeypointIndex) -> list[DataIssue]:
    issues = []
    for record in tqdm(index.records, desc="decoding images", unit="img"):
        try:
            load_image(record.path)
        except DataError as e:
            issues.append(DataIssue(str(record.path), f"cannot be decoded ({e.__cause__}); replace "
                                    "it with the original file", image_id=record.image_id))
    return issues


def _summary(index: CocoKeypointIndex) -> Table:
    records = index.records
    persons = sum(r.num_persons for r in records)
    labelled = sum(r.num_labelled_persons for r in records)
    keypoints = sum(int((r.keypoints[:, :, 2] > 0).sum()) for r in records)
    table = Table(title=str(index.folder), show_header=False)
    rows = [
        ("schema", f"{index.schema.name} ({index.schema.num_keypoints} keypoints)"),
        ("images", f"{len(records)} usable, {len(index.report.skipped_image_ids)} left out"),
        ("images with persons", str(sum(1 for r in records if r.num_persons))),
        ("persons", f"{persons} ({labelled} with keypoints, {persons - labelled} boxes only)"),
        ("labelled keypoints", str(keypoints)),
        ("crowd regions (ignored)", str(sum(len(r.crowd_boxes) for r in records))),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table
