"""`clickpose annotate create|serve|status|export`: a Click-Pose annotation task on a folder
of images, without FiftyOne (with FiftyOne: dataset.annotate(..., backend="clickpose"))."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from clickpose.cli.main import app
from clickpose.cli.output import fail

annotate_app = typer.Typer(no_args_is_help=True,
                           help="Annotate images in the browser with Click-Pose.")
app.add_typer(annotate_app, name="annotate")
console = Console(highlight=False)


@annotate_app.command("create")
def create(
    images: Annotated[Path, typer.Argument(help="folder of images, or a dataset folder "
                                           "(annotations.json + images/)")],
    task: Annotated[Path, typer.Option("--task", help="task folder to create")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Click-Pose checkpoint")],
    min_score: Annotated[float, typer.Option("--min-score", help="keep predicted persons "
                                             "scoring at least this")] = 0.3,
    max_persons: Annotated[int, typer.Option("--max-persons", min=1)] = 20,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
) -> None:
    """Pre-label every image with the model and write a task folder."""
    from tqdm import tqdm

    from clickpose.annotator.prelabel import prelabel, task_images_from_files
    from clickpose.annotator.task import TaskError, create_task
    from clickpose.data.errors import DataError
    from clickpose.labels_fo.pool import IMAGE_SUFFIXES
    from clickpose.model.checkpoint import CheckpointError, load_model

    folder = images / "images" if (images / "images").is_dir() else images
    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        fail(console, ValueError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})"))
    try:
        model = load_model(checkpoint)
        entries = task_images_from_files(paths)
        prelabels = {e.id: prelabel(model, e.filepath, min_score, max_persons)
                     for e in tqdm(entries, desc="pre-labelling", unit="img")}
        create_task(task, entries, prelabels, model.schema, checkpoint=checkpoint,
                    overwrite=overwrite)
    except (TaskError, CheckpointError, DataError, ValueError) as e:
        fail(console, e)
    persons = sum(poses.num_persons for poses in prelabels.values())
    console.print(f"task with {len(entries)} images and {persons} pre-labelled persons in "
                  f"{task}; next: clickpose annotate serve {task}")
    if persons == 0:
        console.print(f"[yellow]note:[/yellow] no person scored {min_score} or more, so the "
                      "images start empty: draw each person's box in the annotator (B, then "
                      "drag), or create the task again with a lower --min-score (e.g. 0) "
                      "and --overwrite to see the model's best guesses", soft_wrap=True)


@annotate_app.command("serve")
def serve_command(
    task: Annotated[Path, typer.Argument(help="task folder")],
    host: Annotated[str, typer.Option("--host", help="127.0.0.1 (this machine only) or an "
                                      "address others reach (then --token is required)")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8765,
    token: Annotated[str | None, typer.Option("--token", envvar="CLICKPOSE_ANNOTATOR_TOKEN",
                                              help="secret the page must send")] = None,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="another "
                                                    "checkpoint than the task's")] = None,
) -> None:
    """Serve the annotator page for a task (Ctrl+C stops it; accepted images are saved)."""
    from clickpose.annotator.serve import serve
    from clickpose.annotator.task import TaskError
    from clickpose.model.checkpoint import CheckpointError

    try:
        serve(task, host=host, port=port, token=token, checkpoint=checkpoint)
    except (TaskError, CheckpointError, ValueError) as e:
        fail(console, e)


@annotate_app.command("status")
def status_command(task: Annotated[Path, typer.Argument(help="task folder")]) -> None:
    """Images done / left, clicks and seconds of a task."""
    from clickpose.annotator.task import Task, TaskError

    try:
        s = Task(task).status()
    except TaskError as e:
        fail(console, e)
    console.print(f"{s.done} of {s.images} images accepted, {s.left} left, {s.clicks} clicks, "
                  f"{s.seconds:.0f} s" + (", finished" if s.complete else ""))


@annotate_app.command("export")
def export_command(
    task: Annotated[Path, typer.Argument(help="task folder")],
    out: Annotated[Path, typer.Option("--out", help="COCO annotations.json to write")],
) -> None:
    """Write the accepted images as COCO person_keypoints (with clicks and seconds)."""
    from clickpose.annotator.export import export_task
    from clickpose.annotator.task import Task, TaskError

    try:
        export_task(task, out)
        opened = Task(task)
        labels, images = opened.labels(), len(opened.images)
    except TaskError as e:
        fail(console, e)
    persons = sum(label.poses.num_persons for label in labels.values())
    console.print(f"wrote {out}: {len(labels)} accepted images, {persons} persons "
                  f"({images - len(labels)} of {images} images not accepted yet)")
