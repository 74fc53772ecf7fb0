"""One image under correction: the model's InteractiveSession plus what the annotator did.

Every request is checked here before the session sees it (person, keypoint, coordinates
inside the image, box shape), so a bad request changes nothing. The provenance of an
accepted image records the keypoint clicks in order, every action, and the seconds spent.
"""
from __future__ import annotations

import math
import time

import numpy as np

from clickpose.annotator.poses_json import poses_to_json
from clickpose.annotator.task import Task, new_label_id, now_iso, prelabel_person_ids
from clickpose.data.coco import load_image

IDLE_SECONDS = 120.0   # a longer pause between two requests counts as this much


class EditError(ValueError):
    """A request that does not fit the image (the server answers 4xx with this message)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


class ImageEditor:
    def __init__(self, task: Task, image_id: str, model):
        self.task, self.image_id = task, image_id
        self.info = task.image(image_id)
        self.schema = task.schema
        previous = task.label(image_id)
        if previous is not None:   # reopened: start from what was accepted
            poses, self.person_ids = previous.poses, list(previous.person_ids)
            self._seconds_before = float(previous.provenance.get("seconds", 0.0))
            self._clicks = list(previous.provenance.get("clicks", []))
            self._actions = list(previous.provenance.get("actions", []))
            self._accepts = int(previous.provenance.get("accepts", 0))
        else:
            poses, self.person_ids = task.prelabel(image_id), prelabel_person_ids(task, image_id)
            self._seconds_before, self._clicks, self._actions, self._accepts = 0.0, [], [], 0
        self.session = model.session(load_image(self.info.filepath), initial_poses=poses)
        self._history: list[tuple[list[str], str]] = []   # (person ids, action) per edit
        self._active_since: float | None = time.monotonic()
        self._opened_at = now_iso()

    # ---- state ----------------------------------------------------------------------
    @property
    def seconds(self) -> float:
        """Time spent on this image: while it is the open one, and at most IDLE_SECONDS
        since the last request (a person who walked away is not working on it)."""
        if self._active_since is None:
            return self._seconds_before
        return self._seconds_before + min(time.monotonic() - self._active_since, IDLE_SECONDS)

    def _tick(self) -> None:
        """Bank the time up to this request."""
        self._seconds_before = self.seconds
        if self._active_since is not None:
            self._active_since = time.monotonic()

    def pause(self) -> None:
        """The annotator moved to another image: stop the clock."""
        self._tick()
        self._active_since = None

    def resume(self) -> None:
        if self._active_since is None:
            self._active_since = time.monotonic()
        else:
            self._tick()

    def state(self) -> dict:
        label = self.task.label(self.image_id)
        return {"image": self.image_id, "width": self.info.width, "height": self.info.height,
                "poses": poses_to_json(self.session.poses), "person_ids": self.person_ids,
                "can_undo": self.session.can_undo, "accepted": label is not None,
                "clicks": len(self._clicks), "seconds": round(self.seconds, 1)}

    # ---- checks ---------------------------------------------------------------------
    def _person(self, person: int) -> int:
        n = self.session.num_persons
        if not 0 <= person < n:
            raise EditError(f"person {person} does not exist; image '{self.image_id}' has "
                            f"{n} persons (0..{n - 1})" if n else
                            f"person {person} does not exist; image '{self.image_id}' has no "
                            "persons (draw a box to add one)")
        return person

    def _keypoint(self, keypoint: int | str) -> int:
        names = self.schema.keypoints
        if isinstance(keypoint, str):
            if keypoint not in names:
                raise EditError(f"unknown keypoint '{keypoint}'; schema '{self.schema.name}' "
                                f"has: {', '.join(names)}")
            return names.index(keypoint)
        if not 0 <= keypoint < len(names):
            raise EditError(f"keypoint {keypoint} is outside 0..{len(names) - 1} of schema "
                            f"'{self.schema.name}'")
        return keypoint

    def _point(self, x: float, y: float) -> None:
        w, h = self.info.width, self.info.height
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= w and 0 <= y <= h):
            raise EditError(f"point ({x}, {y}) is outside image '{self.image_id}' "
                            f"({w} x {h} pixels)")

    def _log(self, action: str, **details) -> None:
        self._actions.append({"action": action, "t": round(self.seconds, 3), **details})

    def _remember(self, action: str) -> None:
        """Called right after the session acted, before the person ids change."""
        self._history.append((list(self.person_ids), action))

    # ---- actions --------------------------------------------------------------------
    def click(self, person: int, keypoint: int | str, x: float, y: float, visible: int = 2):
        person, k = self._person(person), self._keypoint(keypoint)
        self._point(x, y)
        if visible not in (1, 2):
            raise EditError(f"visible={visible}: a clicked keypoint is 2 (visible) or 1 "
                            "(occluded); use visibility 0 to mark it not labelled")
        self.session.click(person, k, x, y, visible)
        self._remember("click")
        entry = {"person_id": self.person_ids[person], "keypoint": self.schema.keypoints[k],
                 "x": round(x, 2), "y": round(y, 2), "visible": visible}
        self._clicks.append({**entry, "t": round(self.seconds, 3)})
        self._log("click", **entry)
        return self.state()

    def set_visibility(self, person: int, keypoint: int | str, v: int):
        person, k = self._person(person), self._keypoint(keypoint)
        if v not in (0, 1, 2):
            raise EditError(f"visibility {v}: use 0 (not labelled), 1 (occluded) or 2 (visible)")
        self.session.set_visibility(person, k, v)
        self._remember("visibility")
        self._log("visibility", person_id=self.person_ids[person],
                  keypoint=self.schema.keypoints[k], v=v)
        return self.state()

    def add_person(self, box: list[float]):
        x0, y0, x1, y1 = box
        self._point(x0, y0)
        self._point(x1, y1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise EditError(f"box {box}: x1 > x0 and y1 > y0 by at least 2 pixels, please")
        self.session.add_person(np.array([[x0, y0, x1, y1]], dtype=np.float64))
        self._remember("add_person")
        self.person_ids.append(new_label_id())
        self._log("add_person", person_id=self.person_ids[-1], box=[round(v, 2) for v in box])
        return self.state()

    def remove_person(self, person: int):
        person = self._person(person)
        self.session.remove_person(person)
        self._remember("remove_person")
        removed = self.person_ids.pop(person)
        self._log("remove_person", person_id=removed)
        return self.state()

    def confirm_person(self, person: int):
        person = self._person(person)
        self.session.confirm_person(person)
        self._remember("confirm_person")
        self._log("confirm_person", person_id=self.person_ids[person])
        return self.state()

    def undo(self):
        if self.session.can_undo:
            self.session.undo()
            self.person_ids, undone = self._history.pop()
            if undone == "click":
                self._clicks.pop()
            self._log("undo", undone=undone)
        return self.state()

    def accept(self):
        """Save this image's label now (atomically), with its provenance."""
        self._accepts += 1
        provenance = {"clicks": self._clicks, "actions": self._actions,
                      "seconds": round(self.seconds, 3), "opened_at": self._opened_at,
                      "accepted_at": now_iso(), "accepts": self._accepts,
                      "checkpoint": self.task.checkpoint}
        self.task.save_label(self.image_id, self.session.poses, self.person_ids, provenance)
        return self.state()
