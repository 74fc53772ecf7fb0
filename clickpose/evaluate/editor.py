"""The editing actions an annotator has on one image's poses, and two editors without a model.

The NoC simulator drives any PoseEditor; the model's interactive session implements the same
protocol (each click re-predicts the other keypoints), ModelOnlyEditor moves only what was
clicked, ManualEditor starts from nothing (labelling by hand).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from clickpose.poses import Poses


@runtime_checkable
class PoseEditor(Protocol):
    """One image's persons under correction. Every action returns the poses after it."""

    @property
    def poses(self) -> Poses: ...

    def click(self, person: int, keypoint: int, x: float, y: float, visible: int = 2) -> Poses:
        """Put `keypoint` of `person` at (x, y) pixels; it stays there until clicked again."""
        ...

    def add_person(self, box_xyxy) -> Poses:
        """A person the prediction missed, from a drawn box; appended last."""
        ...

    def remove_person(self, person: int) -> Poses:
        """Delete a false positive; later persons shift down by one."""
        ...

    def confirm_person(self, person: int) -> Poses:
        """The annotator vouches for this person: its score becomes 1."""
        ...

    def undo(self) -> Poses:
        """Revert the last action (no-op when there is none)."""
        ...


class ModelOnlyEditor:
    """Edits without a model: a click sets that keypoint and nothing else changes."""

    def __init__(self, poses: Poses):
        self._poses = poses.copy()
        self._history: list[Poses] = []

    @property
    def poses(self) -> Poses:
        return self._poses

    def _check_person(self, person: int) -> None:
        if not 0 <= person < self._poses.num_persons:
            count = self._poses.num_persons
            raise IndexError(f"person {person} does not exist; this image has {count} persons "
                             f"(0..{count - 1})")

    def _edit(self) -> Poses:
        """Save the current poses for undo and return a copy to change."""
        self._history.append(self._poses)
        self._poses = self._poses.copy()
        return self._poses

    def click(self, person: int, keypoint: int, x: float, y: float, visible: int = 2) -> Poses:
        self._check_person(person)
        if not 0 <= keypoint < self._poses.num_keypoints:
            raise IndexError(f"keypoint {keypoint} does not exist; the schema has "
                             f"{self._poses.num_keypoints} keypoints")
        poses = self._edit()
        poses.keypoints[person, keypoint] = (x, y)
        poses.keypoint_scores[person, keypoint] = 1.0
        poses.visibility[person, keypoint] = visible
        return poses

    def add_person(self, box_xyxy) -> Poses:
        box = np.asarray(box_xyxy, dtype=np.float64).reshape(4)
        k = self._poses.num_keypoints
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        # Without a model nothing is known inside the box: keypoints wait at its centre, unlabelled.
        new = Poses(keypoints=np.tile(centre, (1, k, 1)), keypoint_scores=np.zeros((1, k)),
                    visibility=np.zeros((1, k), dtype=np.int64), boxes=box[None],
                    scores=np.ones(1))
        old = self._poses
        self._history.append(old)
        self._poses = Poses(*(np.concatenate([getattr(old, f), getattr(new, f)]) for f in
                              ("keypoints", "keypoint_scores", "visibility", "boxes", "scores")))
        return self._poses

    def remove_person(self, person: int) -> Poses:
        self._check_person(person)
        self._history.append(self._poses)
        keep = np.arange(self._poses.num_persons) != person
        self._poses = self._poses.select(keep)
        return self._poses

    def confirm_person(self, person: int) -> Poses:
        self._check_person(person)
        poses = self._edit()
        poses.scores[person] = 1.0
        return poses

    def undo(self) -> Poses:
        if self._history:
            self._poses = self._history.pop()
        return self._poses


class ManualEditor(ModelOnlyEditor):
    """Labelling by hand: no prediction to start from; every person drawn, every point clicked."""

    def __init__(self, num_keypoints: int):
        super().__init__(Poses.empty(num_keypoints))
