"""Keypoint schemas: names, skeleton, OKS sigmas and left/right flip pairs.

A schema travels with every dataset (as extra fields of the COCO category) and every
checkpoint (as JSON), so a model can refuse data labelled with other keypoints.
Indices are 0-based here; COCO's category skeleton is 1-based and converted at the edges.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

COCO17_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]
# Official COCO keypoint sigmas (pycocotools COCOeval.kpt_oks_sigmas, i.e. the per-keypoint
# standard deviations / 10 used by OKS).
COCO17_SIGMAS = [
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
]
# The COCO person category skeleton, 1-based as in person_keypoints_*.json.
COCO17_SKELETON_1BASED = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
    [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]
# Sigma for a new keypoint when none is given: the shoulder/head-top scale, a middle value
# among COCO's sigmas (CrowdPose uses it for head_top).
DEFAULT_NEW_SIGMA = 0.079

# Keypoints that the synthetic people carry beyond COCO-17, for new-keypoint adaptation:
# name -> (sigma, the existing keypoint it hangs from in the skeleton).
EXTRA_KEYPOINTS: dict[str, tuple[float, str]] = {
    "head_top": (0.079, "nose"),
    "left_hand_tip": (0.062, "left_wrist"),
    "right_hand_tip": (0.062, "right_wrist"),
    "left_toe": (0.089, "left_ankle"),
    "right_toe": (0.089, "right_ankle"),
}


class SchemaError(ValueError):
    """A schema that is malformed, or that does not match the data or checkpoint it meets."""


def infer_flip_pairs(names: list[str]) -> list[tuple[int, int]]:
    """Pairs (i, j) where names[i] = 'left_X' and names[j] = 'right_X'."""
    index = {n: i for i, n in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        if name.startswith("left_") and ("right_" + name[5:]) in index:
            pairs.append((i, index["right_" + name[5:]]))
    return pairs


class KeypointSchema(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    keypoints: list[str]
    sigmas: list[float]
    skeleton: list[tuple[int, int]]  # 0-based index pairs
    flip_pairs: list[tuple[int, int]]

    @model_validator(mode="after")
    def _check(self) -> KeypointSchema:
        k = len(self.keypoints)
        if k == 0:
            raise SchemaError(f"schema '{self.name}': 'keypoints' is empty; list at least one name")
        if len(set(self.keypoints)) != k:
            dup = sorted({n for n in self.keypoints if self.keypoints.count(n) > 1})
            raise SchemaError(f"schema '{self.name}': duplicate keypoint names {dup}")
        if len(self.sigmas) != k:
            raise SchemaError(
                f"schema '{self.name}': {len(self.sigmas)} sigmas for {k} keypoints; "
                "give one OKS sigma per keypoint"
            )
        if any(not (s > 0) for s in self.sigmas):
            raise SchemaError(f"schema '{self.name}': every sigma must be > 0")
        for field in ("skeleton", "flip_pairs"):
            for a, b in getattr(self, field):
                if not (0 <= a < k and 0 <= b < k):
                    raise SchemaError(
                        f"schema '{self.name}': {field} pair ({a}, {b}) is outside 0..{k - 1}"
                    )
        return self

    # ---- derived views -------------------------------------------------------------
    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def index(self, name: str) -> int:
        try:
            return self.keypoints.index(name)
        except ValueError:
            raise SchemaError(
                f"schema '{self.name}' has no keypoint '{name}'; known: {', '.join(self.keypoints)}"
            ) from None

    @property
    def flip_permutation(self) -> list[int]:
        """perm[i] = index that keypoint i becomes after a horizontal flip."""
        perm = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    @property
    def sigmas_array(self) -> np.ndarray:
        return np.asarray(self.sigmas, dtype=np.float64)

    # ---- growth --------------------------------------------------------------------
    def extend(
        self,
        names: list[str],
        sigmas: list[float] | None = None,
        skeleton: list[tuple[str, str]] | None = None,
        name: str | None = None,
    ) -> KeypointSchema:
        """A new schema with `names` appended (existing indices keep their meaning)."""
        clash = [n for n in names if n in self.keypoints]
        if clash:
            raise SchemaError(f"schema '{self.name}' already has keypoints {clash}")
        if sigmas is None:
            sigmas = [EXTRA_KEYPOINTS.get(n, (DEFAULT_NEW_SIGMA, None))[0] for n in names]
        all_names = self.keypoints + list(names)
        idx = {n: i for i, n in enumerate(all_names)}
        if skeleton is None:
            skeleton = [(EXTRA_KEYPOINTS[n][1], n) for n in names
                        if n in EXTRA_KEYPOINTS and EXTRA_KEYPOINTS[n][1] in idx]
        try:
            new_edges = [(idx[a], idx[b]) for a, b in skeleton]
        except KeyError as e:
            raise SchemaError(f"skeleton edge names unknown keypoint {e}") from None
        return KeypointSchema(
            name=name or f"{self.name}+{len(names)}",
            keypoints=all_names,
            sigmas=list(self.sigmas) + list(sigmas),
            skeleton=list(self.skeleton) + new_edges,
            flip_pairs=infer_flip_pairs(all_names),
        )

    def is_prefix_of(self, other: KeypointSchema) -> bool:
        """True when `other` grows this schema (same leading keypoints): a fine-tune can start here."""
        k = self.num_keypoints
        return other.keypoints[:k] == self.keypoints and other.sigmas[:k] == self.sigmas

    def require_same(self, other: KeypointSchema, where: str) -> None:
        """Raise a SchemaError naming `where` and the difference when the schemas differ."""
        if self.keypoints != other.keypoints:
            missing = [n for n in self.keypoints if n not in other.keypoints]
            extra = [n for n in other.keypoints if n not in self.keypoints]
            raise SchemaError(
                f"{where}: keypoint schema mismatch: expected {self.num_keypoints} keypoints "
                f"('{self.name}'), found {other.num_keypoints} ('{other.name}'); "
                f"missing {missing or 'none'}, unexpected {extra or 'none'}"
                + ("; same names in another order" if not missing and not extra else "")
                + ". Use a checkpoint trained on this schema, or adapt it with --init."
            )
        if not np.allclose(self.sigmas, other.sigmas):
            raise SchemaError(f"{where}: same keypoints but different OKS sigmas")

    # ---- COCO category and JSON ---------------------------------------------------
    def to_coco_category(self, category_id: int = 1, category_name: str = "person") -> dict:
        """A COCO category; `sigmas` and `flip_pairs` ride along so the file is self-describing."""
        return {
            "supercategory": "person",
            "id": category_id,
            "name": category_name,
            "keypoints": list(self.keypoints),
            "skeleton": [[a + 1, b + 1] for a, b in self.skeleton],
            "sigmas": list(self.sigmas),
            "flip_pairs": [list(p) for p in self.flip_pairs],
            "schema_name": self.name,
        }

    @classmethod
    def from_coco_category(cls, category: dict, where: str = "category") -> KeypointSchema:
        names = category.get("keypoints")
        if not names:
            raise SchemaError(
                f"{where}: category id {category.get('id')} ('{category.get('name')}') has no "
                "'keypoints' list; a person_keypoints file names its keypoints in the category"
            )
        sigmas = category.get("sigmas")
        if sigmas is None:
            if list(names) == COCO17_NAMES:
                sigmas = COCO17_SIGMAS
            else:
                sigmas = [EXTRA_KEYPOINTS.get(n, (DEFAULT_NEW_SIGMA, None))[0] if n not in
                          COCO17_NAMES else COCO17_SIGMAS[COCO17_NAMES.index(n)] for n in names]
        try:
            skeleton = [(a - 1, b - 1) for a, b in category.get("skeleton", [])]
        except (TypeError, ValueError):
            raise SchemaError(
                f"{where}: category id {category.get('id')}: 'skeleton' is "
                f"{category.get('skeleton')!r}; give a list of [a, b] pairs of 1-based "
                "keypoint numbers"
            ) from None
        flip = category.get("flip_pairs")
        flip = [tuple(p) for p in flip] if flip is not None else infer_flip_pairs(list(names))
        name = category.get("schema_name") or ("coco17" if list(names) == COCO17_NAMES
                                               else f"{category.get('name', 'custom')}{len(names)}")
        try:
            return cls(name=name, keypoints=list(names), sigmas=list(sigmas),
                       skeleton=skeleton, flip_pairs=flip)
        except ValueError as e:
            raise SchemaError(f"{where}: {e}") from None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> KeypointSchema:
        return cls.model_validate(json.loads(text))

    def save(self, path: str | Path) -> None:
        from clickpose.io import atomic_write_text

        atomic_write_text(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> KeypointSchema:
        return cls.from_json(Path(path).read_text())


def coco17() -> KeypointSchema:
    """The COCO-17 person schema with the official sigmas."""
    return KeypointSchema(
        name="coco17",
        keypoints=list(COCO17_NAMES),
        sigmas=list(COCO17_SIGMAS),
        skeleton=[(a - 1, b - 1) for a, b in COCO17_SKELETON_1BASED],
        flip_pairs=infer_flip_pairs(COCO17_NAMES),
    )


def coco17_plus(extra: list[str]) -> KeypointSchema:
    """COCO-17 grown with extra keypoints (see EXTRA_KEYPOINTS for the built-in ones)."""
    unknown = [n for n in extra if n not in EXTRA_KEYPOINTS]
    if unknown:
        raise SchemaError(
            f"unknown extra keypoints {unknown}; built in: {', '.join(EXTRA_KEYPOINTS)}"
        )
    return coco17().extend(extra, name="coco17+" + "+".join(extra)) if extra else coco17()
