"""Dataset versions: the image pool, each round's labeled set (COCO json), selection and
annotation records, committed together as one manifest version so a round is all-or-nothing.

    datasets = Datasets(store)
    v1 = datasets.set_pool("people", images, expected_version=0)
    v2 = datasets.add_round("people", 1, labels=coco, selection=picked, annotations=clicks,
                            expected_version=v1.number)
    print(datasets.diff("people", 1, 2).summary())
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .backend import Store, is_sha256, sha256_file
from .blobs import Blobs
from .errors import ObjectNotFoundError, StorageError
from .manifest import Manifests


class DatasetFormatError(StorageError, ValueError):
    """A pool, labeled set, selection or annotation record with a missing or wrong field."""


@dataclass(frozen=True)
class PoolImage:
    key: str  # object key of the image in the store
    size: int
    sha256: str


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    number: int
    pool: str | None  # blob key of the pool listing
    pool_size: int
    rounds: dict[int, dict[str, Any]]  # round -> {"labels", "selection", "annotations": blob keys}
    message: str
    written_at: float

    @property
    def last_round(self) -> int | None:
        return max(self.rounds) if self.rounds else None


@dataclass
class DatasetDiff:
    name: str
    old: int
    new: int
    pool_added: list[str] = field(default_factory=list)
    pool_removed: list[str] = field(default_factory=list)
    pool_changed: list[str] = field(default_factory=list)  # same key, different bytes
    rounds_added: list[int] = field(default_factory=list)
    rounds_removed: list[int] = field(default_factory=list)
    rounds_changed: list[int] = field(default_factory=list)
    labeled_added: list[str] = field(default_factory=list)  # image file names, latest labeled sets
    labeled_removed: list[str] = field(default_factory=list)
    labels_changed: list[str] = field(default_factory=list)  # images whose annotations differ

    @property
    def is_empty(self) -> bool:
        return not any(v for k, v in vars(self).items() if isinstance(v, list))

    def summary(self) -> str:
        parts = [f"{self.name} v{self.old} -> v{self.new}:"]
        for label, values in [("pool +", self.pool_added), ("pool -", self.pool_removed),
                              ("pool changed", self.pool_changed), ("rounds +", self.rounds_added),
                              ("rounds -", self.rounds_removed), ("rounds changed", self.rounds_changed),
                              ("labeled +", self.labeled_added), ("labeled -", self.labeled_removed),
                              ("labels changed", self.labels_changed)]:
            if values:
                parts.append(f"{label} {len(values)}")
        return " ".join(parts) if len(parts) > 1 else parts[0] + " no change"


class Datasets:
    def __init__(self, store: Store, root: str = "datasets"):
        self.store = store
        self.manifests = Manifests(store, root=f"{root}/manifests")
        self.blobs = Blobs(store, root=f"{root}/blobs")

    # -- reading -------------------------------------------------------------------------
    def versions(self, name: str) -> list[int]:
        return self.manifests.versions(name)

    def version(self, name: str, number: int | None = None) -> DatasetVersion:
        """A dataset version (default: the latest). ObjectNotFoundError if it does not exist."""
        record = self.manifests.read(name, number)
        value = record.value
        return DatasetVersion(
            name, record.version, value["pool"], value["pool_size"],
            {int(r): refs for r, refs in value["rounds"].items()}, value["message"], record.written_at,
        )

    def latest(self, name: str) -> DatasetVersion | None:
        try:
            return self.version(name)
        except ObjectNotFoundError:
            return None

    def pool(self, version: DatasetVersion) -> list[PoolImage]:
        if version.pool is None:
            return []
        return [PoolImage(**entry) for entry in self.blobs.get_json(version.pool)]

    def labels(self, version: DatasetVersion, round_index: int | None = None) -> dict:
        """The labeled set (COCO dict) after `round_index` (default: the last round)."""
        return self.blobs.get_json(self._round(version, round_index)["labels"])

    def selection(self, version: DatasetVersion, round_index: int | None = None) -> list[dict]:
        ref = self._round(version, round_index).get("selection")
        return self.blobs.get_json(ref) if ref else []

    def annotations(self, version: DatasetVersion, round_index: int | None = None) -> list[dict]:
        ref = self._round(version, round_index).get("annotations")
        return self.blobs.get_json(ref) if ref else []

    def _round(self, version: DatasetVersion, round_index: int | None) -> dict:
        index = version.last_round if round_index is None else round_index
        if index is None or index not in version.rounds:
            raise ObjectNotFoundError(
                f"{self.store.uri}: dataset '{version.name}' v{version.number} has no round {index}; "
                f"rounds: {sorted(version.rounds)}"
            )
        return version.rounds[index]

    # -- writing -------------------------------------------------------------------------
    def ingest_images(self, files: Mapping[str, Path], progress: bool = False) -> list[PoolImage]:
        """Upload local image files under the given keys; returns their pool entries."""
        from tqdm import tqdm

        images = []
        for key, path in tqdm(files.items(), desc="upload images", disable=not progress):
            info = self.store.put_file(key, Path(path))
            images.append(PoolImage(key, info.size, info.sha256 or sha256_file(Path(path))))
        return images

    def set_pool(self, name: str, images: Iterable[PoolImage], expected_version: int,
                 message: str = "pool") -> DatasetVersion:
        """Commit a version whose pool is `images` (rounds kept). ConflictError if not based on the latest."""
        entries = _check_pool(list(images))
        pool_key = self.blobs.put_json(entries)
        base = self._base(name, expected_version)
        value = {**base, "pool": pool_key, "pool_size": len(entries), "message": message}
        return self._commit(name, value, expected_version)

    def add_round(self, name: str, round_index: int, labels: dict, expected_version: int,
                  selection: list[dict] | None = None, annotations: list[dict] | None = None,
                  message: str = "") -> DatasetVersion:
        """Commit round `round_index`: labeled set, selection with scores, click/time records."""
        base = self._base(name, expected_version)
        pool_keys = {e["key"] for e in self.blobs.get_json(base["pool"])} if base["pool"] else set()
        refs = {"labels": self.blobs.put_json(_check_coco(labels))}
        if selection is not None:
            refs["selection"] = self.blobs.put_json(_check_selection(selection, pool_keys))
        if annotations is not None:
            refs["annotations"] = self.blobs.put_json(_check_annotation_records(annotations))
        rounds = {**base["rounds"], str(round_index): refs}
        value = {**base, "rounds": rounds, "message": message or f"round {round_index}"}
        return self._commit(name, value, expected_version)

    def _base(self, name: str, expected_version: int) -> dict:
        if expected_version == 0:
            return {"pool": None, "pool_size": 0, "rounds": {}, "message": ""}
        return dict(self.manifests.read(name, expected_version).value)

    def _commit(self, name: str, value: dict, expected_version: int) -> DatasetVersion:
        self.manifests.write(name, value, expected_version)
        return self.version(name, expected_version + 1)

    # -- comparing -----------------------------------------------------------------------
    def diff(self, name: str, old: int, new: int) -> DatasetDiff:
        a, b = self.version(name, old), self.version(name, new)
        result = DatasetDiff(name, old, new)
        pool_a = {p.key: p.sha256 for p in self.pool(a)}
        pool_b = {p.key: p.sha256 for p in self.pool(b)}
        result.pool_added = sorted(pool_b.keys() - pool_a.keys())
        result.pool_removed = sorted(pool_a.keys() - pool_b.keys())
        result.pool_changed = sorted(k for k in pool_a.keys() & pool_b.keys() if pool_a[k] != pool_b[k])
        result.rounds_added = sorted(b.rounds.keys() - a.rounds.keys())
        result.rounds_removed = sorted(a.rounds.keys() - b.rounds.keys())
        result.rounds_changed = sorted(r for r in a.rounds.keys() & b.rounds.keys() if a.rounds[r] != b.rounds[r])
        labels_a = _labels_by_image(self.labels(a)) if a.rounds else {}
        labels_b = _labels_by_image(self.labels(b)) if b.rounds else {}
        result.labeled_added = sorted(labels_b.keys() - labels_a.keys())
        result.labeled_removed = sorted(labels_a.keys() - labels_b.keys())
        result.labels_changed = sorted(k for k in labels_a.keys() & labels_b.keys() if labels_a[k] != labels_b[k])
        return result


def _labels_by_image(coco: dict) -> dict[str, list[str]]:
    """file_name -> canonical annotations (ids dropped: renumbering is not a change)."""
    names = {img["id"]: img["file_name"] for img in coco["images"]}
    by_image: dict[str, list[str]] = {name: [] for name in names.values()}
    for ann in coco["annotations"]:
        content = {k: v for k, v in ann.items() if k not in ("id", "image_id")}
        by_image[names[ann["image_id"]]].append(json.dumps(content, sort_keys=True))
    return {name: sorted(anns) for name, anns in by_image.items()}


def _check_pool(images: list[PoolImage]) -> list[dict]:
    seen = set()
    for i, image in enumerate(images):
        if image.key in seen:
            raise DatasetFormatError(f"pool: image {i} key {image.key!r} appears twice; keys must be unique")
        if not is_sha256(image.sha256):
            raise DatasetFormatError(f"pool: image {i} ({image.key}): 'sha256' must be 64 lowercase "
                                     "hex characters (a sha256 hexdigest)")
        seen.add(image.key)
    return [asdict(image) for image in sorted(images, key=lambda im: im.key)]


def _check_coco(coco: dict) -> dict:
    for field_name in ("images", "annotations", "categories"):
        if not isinstance(coco.get(field_name), list):
            raise DatasetFormatError(f"labels: COCO field '{field_name}' is missing or not a list")
    image_ids = {img.get("id") for img in coco["images"]}
    for ann in coco["annotations"]:
        if ann.get("image_id") not in image_ids:
            raise DatasetFormatError(
                f"labels: annotation {ann.get('id')}: 'image_id' {ann.get('image_id')} is not in 'images'"
            )
    return coco


def _check_selection(selection: list[dict], pool_keys: set[str]) -> list[dict]:
    for i, entry in enumerate(selection):
        if not isinstance(entry.get("image"), str) or not isinstance(entry.get("score"), (int, float)):
            raise DatasetFormatError(f"selection: entry {i} needs 'image' (key) and 'score' (number)")
        if pool_keys and entry["image"] not in pool_keys:
            raise DatasetFormatError(f"selection: entry {i}: image {entry['image']!r} is not in the pool")
    return selection


def _check_annotation_records(records: list[dict]) -> list[dict]:
    for i, rec in enumerate(records):
        if not isinstance(rec.get("image"), str):
            raise DatasetFormatError(f"annotations: record {i} needs 'image' (the image key)")
        if not isinstance(rec.get("clicks"), int) or not isinstance(rec.get("seconds"), (int, float)):
            raise DatasetFormatError(
                f"annotations: record {i} ({rec['image']}) needs 'clicks' (int) and 'seconds' (number)"
            )
    return records
