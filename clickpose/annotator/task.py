"""The annotation task on disk: what to label, the model's pre-labels, every accepted label.

    TASK_DIR/task.json            images (id, file, size, uncertainty, reason), schema, checkpoint
    TASK_DIR/prelabels/ID.json    the model's poses, persons worst first
    TASK_DIR/labels/ID.json       an accepted image: poses, person ids, provenance
    TASK_DIR/complete.json        written by "finish": the task is done

Each file is written atomically the moment it changes, so a crash of the server or the
browser loses at most the image being edited. Readers (FiftyOne's load_annotations, a
Prefect flow waiting for the task) only read these files: no server needs to be running.
"""
from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from clickpose.annotator.poses_json import poses_from_json, poses_to_json
from clickpose.io import atomic_write_json
from clickpose.keypoints import KeypointSchema
from clickpose.model.pretrained import resolve_checkpoint_path
from clickpose.poses import Poses

FORMAT = "clickpose-annotation-task"
TASK_FILE, COMPLETE_FILE = "task.json", "complete.json"
PRELABELS, LABELS = "prelabels", "labels"
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class TaskError(ValueError):
    """A task folder that is missing or damaged, or a request that does not fit the task."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_label_id() -> str:
    """24 hex digits: a valid FiftyOne (BSON ObjectId) label id."""
    return secrets.token_hex(12)


@dataclass
class TaskImage:
    id: str                          # FiftyOne sample id, or any [A-Za-z0-9_.-] name
    filepath: str                    # absolute path of the image
    width: int
    height: int
    uncertainty: float | None = None  # selection score (higher = more useful to label)
    reason: str | None = None         # why selection picked it


@dataclass
class TaskStatus:
    images: int
    done: int
    left: int
    clicks: int       # keypoint clicks over accepted images
    actions: int      # every edit (clicks, visibility, boxes, deletions, undo)
    seconds: float    # time spent on accepted images
    complete: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Label:
    image_id: str
    poses: Poses
    person_ids: list[str]
    provenance: dict


class Task:
    """One task folder. Cheap to open; every read goes to disk (other processes write it)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        where = self.folder / TASK_FILE
        if not where.is_file():
            raise TaskError(f"{self.folder}: no {TASK_FILE}; create the task first "
                            "(dataset.annotate(..., backend='clickpose') or `clickpose annotate "
                            "create`)")
        try:
            meta = json.loads(where.read_text())
        except json.JSONDecodeError as e:
            raise TaskError(f"{where}: not valid JSON ({e}); the task file is damaged") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else meta
            raise TaskError(f"{where}: 'format' is {found!r}, expected {FORMAT!r}")
        self.meta = meta
        try:
            self.schema = KeypointSchema.model_validate(meta["schema"])
            self.images = [TaskImage(**entry) for entry in meta["images"]]
        except (KeyError, TypeError, ValueError) as e:
            raise TaskError(f"{where}: the task file is damaged ({_why(e)}); restore it from a "
                            "copy (labels/ and prelabels/ stay valid) or create the task "
                            "again") from None
        self._by_id = {image.id: image for image in self.images}

    # ---- reading -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.meta.get("name", self.folder.name)

    @property
    def checkpoint(self) -> str | None:
        return self.meta.get("checkpoint")

    def image(self, image_id: str) -> TaskImage:
        image = self._by_id.get(image_id)
        if image is None:
            raise TaskError(f"image '{image_id}' is not part of task '{self.name}'")
        return image

    def prelabel(self, image_id: str) -> Poses:
        self.image(image_id)
        where = self.folder / PRELABELS / f"{image_id}.json"
        try:
            return poses_from_json(json.loads(where.read_text()), self.schema.num_keypoints,
                                   where="pre-label")
        except (OSError, TypeError, ValueError) as e:
            raise TaskError(f"{where}: the pre-label of image '{image_id}' is missing or "
                            f"damaged ({_why(e)}); restore it from a copy, or create the task "
                            "again in a new folder (to keep the labels accepted here)") from None

    def label(self, image_id: str) -> Label | None:
        """The accepted label of an image, or None while it is not accepted."""
        self.image(image_id)
        where = self.folder / LABELS / f"{image_id}.json"
        if not where.is_file():
            return None
        try:
            data = json.loads(where.read_text())
            poses = poses_from_json(data["poses"], self.schema.num_keypoints, where="'poses'")
            person_ids, provenance = list(data["person_ids"]), data["provenance"]
            if len(person_ids) != poses.num_persons or not isinstance(provenance, dict):
                raise ValueError(f"'person_ids' must hold one id per person "
                                 f"({poses.num_persons}) and 'provenance' an object")
        except (KeyError, TypeError, ValueError) as e:
            raise TaskError(f"{where}: the accepted label of image '{image_id}' is damaged "
                            f"({_why(e)}); restore the file from a copy, or delete it to "
                            "annotate the image again from its pre-label") from None
        return Label(image_id, poses, person_ids, provenance)

    def labels(self) -> dict[str, Label]:
        return {image.id: label for image in self.images
                if (label := self.label(image.id)) is not None}

    def is_complete(self) -> bool:
        return (self.folder / COMPLETE_FILE).is_file()

    def status(self) -> TaskStatus:
        labels = self.labels().values()
        return TaskStatus(
            images=len(self.images), done=len(labels), left=len(self.images) - len(labels),
            clicks=sum(len(lab.provenance.get("clicks", [])) for lab in labels),
            actions=sum(len(lab.provenance.get("actions", [])) for lab in labels),
            seconds=round(sum(float(lab.provenance.get("seconds", 0.0)) for lab in labels), 3),
            complete=self.is_complete())

    # ---- writing -----------------------------------------------------------------------
    def save_label(self, image_id: str, poses: Poses, person_ids: list[str],
                   provenance: dict) -> None:
        self.image(image_id)
        if len(person_ids) != poses.num_persons:
            raise TaskError(f"image '{image_id}': {len(person_ids)} person ids for "
                            f"{poses.num_persons} persons")
        atomic_write_json(self.folder / LABELS / f"{image_id}.json", {
            "image_id": image_id, "poses": poses_to_json(poses), "person_ids": person_ids,
            "provenance": provenance})

    def mark_complete(self, note: str = "") -> TaskStatus:
        status = self.status()
        atomic_write_json(self.folder / COMPLETE_FILE, {"completed_at": now_iso(),
                                                        "note": note, **status.to_dict(),
                                                        "complete": True})
        return self.status()

    def reopen(self) -> None:
        (self.folder / COMPLETE_FILE).unlink(missing_ok=True)


def create_task(folder: str | Path, images: list[TaskImage], prelabels: dict[str, Poses],
                schema: KeypointSchema, checkpoint: str | Path | None = None,
                name: str | None = None, person_ids: dict[str, list[str]] | None = None,
                overwrite: bool = False) -> Task:
    """Write a new task folder. `prelabels[id]` are the poses to start from (persons in the
    order the annotator sees them); `person_ids[id]` the existing label ids they came from."""
    folder = Path(folder)
    if (folder / TASK_FILE).exists() and not overwrite:
        raise TaskError(f"{folder}: a task exists here; pick another folder or pass "
                        "overwrite=True")
    ids = [image.id for image in images]
    bad = [i for i in ids if not _ID.match(i)]
    if bad:
        raise TaskError(f"image ids {bad[:3]} are not plain names ([A-Za-z0-9_.-], up to 128)")
    if len(set(ids)) != len(ids):
        raise TaskError("two task images share an id; ids name files in the task folder")
    for image in images:
        poses = prelabels.get(image.id)
        if poses is None:
            raise TaskError(f"image '{image.id}' has no pre-label; pass empty Poses for none")
        if poses.num_persons and poses.num_keypoints != schema.num_keypoints:
            raise TaskError(f"image '{image.id}': pre-label has {poses.num_keypoints} keypoints "
                            f"per person, schema '{schema.name}' has {schema.num_keypoints}")
    if (folder / TASK_FILE).exists():   # overwrite, once the new task is known to be valid
        shutil.rmtree(folder)
    for image in images:
        poses = prelabels[image.id]
        atomic_write_json(folder / PRELABELS / f"{image.id}.json", {
            **poses_to_json(poses),
            "person_ids": (person_ids or {}).get(image.id) or
            [new_label_id() for _ in range(poses.num_persons)]})
    atomic_write_json(folder / TASK_FILE, {
        "format": FORMAT, "version": 1, "name": name or folder.name, "created_at": now_iso(),
        "checkpoint": str(resolve_checkpoint_path(checkpoint).resolve()) if checkpoint else None,
        "schema": schema.model_dump(mode="json"),
        "images": [asdict(image) for image in images]}, indent=1)
    return Task(folder)


def _why(error: Exception) -> str:
    return f"field {error} is missing" if isinstance(error, KeyError) else str(error)


def prelabel_person_ids(task: Task, image_id: str) -> list[str]:
    where = task.folder / PRELABELS / f"{image_id}.json"
    return list(json.loads(where.read_text())["person_ids"])


def wait_until_complete(folder: str | Path, timeout: float | None = None,
                        poll_seconds: float = 2.0) -> TaskStatus:
    """Block until the annotator presses "finish" (TimeoutError after `timeout` seconds)."""
    task = Task(folder)
    deadline = None if timeout is None else time.monotonic() + timeout
    while not task.is_complete():
        if deadline is not None and time.monotonic() > deadline:
            status = task.status()
            raise TimeoutError(f"task {task.folder}: not finished after {timeout} s "
                               f"({status.done} of {status.images} images accepted)")
        time.sleep(poll_seconds)
    return task.status()
