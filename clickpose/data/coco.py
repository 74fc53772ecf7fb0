"""COCO person-keypoint dataset folders: read, validate everything up front, index with pycocotools.

A dataset folder is `annotations.json` (COCO person_keypoints format) + `images/`. Every
problem is found before training starts and reported with the file, the ids, the field and
the fix; with skip_bad=True the bad images are left out and listed in a DataReport instead.

Pixel convention: coordinates are continuous, pixel (i, j) covers [i, i+1) x [j, j+1), so an
image spans [0, W] x [0, H]. Keypoints with v=0 carry x = y = 0.
"""
from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from pycocotools.coco import COCO
from tqdm import tqdm

from clickpose.data.errors import DataError, DataIssue, DataReport
from clickpose.keypoints import KeypointSchema, SchemaError

if TYPE_CHECKING:
    from clickpose.data.dataset import CocoKeypointDataset

ANNOTATIONS_FILE = "annotations.json"
IMAGES_DIR = "images"
COCO_LISTS = ("images", "annotations", "categories")
VISIBILITY_VALUES = (0, 1, 2)


@dataclass
class ImageRecord:
    """One image and its people, validated; arrays in pixels of the stored image."""

    image_id: int
    file_name: str
    path: Path
    width: int
    height: int
    annotation_ids: np.ndarray  # (N,) int64, the non-crowd persons
    boxes: np.ndarray  # (N, 4) float32 xyxy
    keypoints: np.ndarray  # (N, K, 3) float32 x, y, v; v=0 -> x = y = 0
    areas: np.ndarray  # (N,) float32, COCO 'area' (the OKS scale)
    crowd_boxes: np.ndarray  # (M, 4) float32 xyxy, iscrowd=1 regions: ignored, not targets

    @property
    def num_persons(self) -> int:
        return len(self.annotation_ids)

    @property
    def num_labelled_persons(self) -> int:
        """Persons with at least one labelled keypoint (the others are boxes only)."""
        return int((self.keypoints[:, :, 2] > 0).any(axis=1).sum())


@dataclass
class CocoKeypointIndex:
    """A validated dataset folder: its schema, one record per usable image, the COCO index."""

    folder: Path
    annotation_file: Path
    schema: KeypointSchema
    category_id: int
    records: list[ImageRecord]
    coco: COCO  # pycocotools index over the kept images and annotations (for COCOeval too)
    report: DataReport  # what skip_bad left out; empty when nothing was wrong


@dataclass
class _Person:
    annotation_id: int
    image_id: int
    iscrowd: bool
    box: np.ndarray  # (4,) xyxy
    keypoints: np.ndarray | None  # (K, 3)
    area: float
    entry: dict  # the annotation as in the file, for the COCO index


def load_image(path: str | Path) -> Image.Image:
    """The image as RGB, in its stored pixel orientation."""
    # No ImageOps.exif_transpose: COCO's width/height and coordinates refer to the pixels as
    # stored (the header size, which the loader checks), so turning the image by its EXIF
    # Orientation tag would move it away from its labels.
    try:
        with Image.open(path) as image:
            image.load()
            return image if image.mode == "RGB" else image.convert("RGB")
    except Exception as e:  # PIL raises several types for bad bytes
        raise DataError(f"{path}: cannot decode the image ({e}); replace it with the original "
                        "file (`clickpose check-data DIR --decode` finds every such file)") from e


def load_coco_dataset(
    folder: str | Path,
    schema: KeypointSchema | None = None,
    skip_bad: bool = False,
    transforms=None,
    seed: int | None = None,
    progress: bool = False,
) -> CocoKeypointDataset:
    """A torch Dataset over a validated dataset folder (see read_coco_dataset).

    `dataset.report` lists what skip_bad left out; `transforms` default to normalisation only.
    """
    # Imported here so that validating a folder (check-data) does not pay for torch.
    from clickpose.data.dataset import CocoKeypointDataset

    index = read_coco_dataset(folder, schema=schema, skip_bad=skip_bad, progress=progress)
    return CocoKeypointDataset(index, transforms=transforms, seed=seed)


def read_coco_dataset(
    folder: str | Path,
    schema: KeypointSchema | None = None,
    skip_bad: bool = False,
    progress: bool = False,
) -> CocoKeypointIndex:
    """Validate a dataset folder and index it.

    Raises DataError for every problem found (file-level ones always; per image or
    annotation ones unless skip_bad), SchemaError when `schema` differs from the file's.
    """
    folder = Path(folder)
    ann_file = folder / ANNOTATIONS_FILE
    where = str(ann_file)
    data = _read_json(folder, ann_file)
    _check_coco_layout(data, where)
    category = _keypoint_category(data["categories"], where)
    file_schema = _category_schema(category, where)
    if schema is None:
        schema = file_schema
    else:
        schema.require_same(file_schema, where)
    k = schema.num_keypoints

    issues: list[DataIssue] = []
    entries, declared_ids = _check_image_entries(data["images"], where, issues)
    category_ids = {c["id"] for c in data["categories"]}
    persons = _check_annotations(data["annotations"], where, declared_ids, category["id"],
                                 category_ids, schema, issues)
    _check_image_files(entries, folder / IMAGES_DIR, issues, progress)
    if issues and not skip_bad:
        raise DataError.from_issues(issues)

    bad_images = ({i.image_id for i in issues if i.image_id is not None}
                  | (declared_ids - set(entries)))
    kept_entries = [e for e in entries.values() if e["id"] not in bad_images]
    kept_persons = {p.annotation_id: p for p in persons if p.image_id not in bad_images}
    report = DataReport(
        issues=issues,
        skipped_image_ids=sorted(bad_images),
        skipped_annotation_ids=sorted(
            {i.annotation_id for i in issues if i.annotation_id is not None}
            | {p.annotation_id for p in persons if p.image_id in bad_images}),
    )
    if issues and not kept_entries:
        raise DataError(f"{where}: no usable image left after skipping the bad ones\n"
                        + str(DataError.from_issues(issues)), issues)
    coco = _index(data, category, kept_entries, list(kept_persons.values()))
    records = [_record(entry, [kept_persons[a["id"]] for a in coco.imgToAnns[entry["id"]]],
                       folder / IMAGES_DIR, k) for entry in kept_entries]
    return CocoKeypointIndex(folder=folder, annotation_file=ann_file, schema=schema,
                             category_id=category["id"], records=records, coco=coco, report=report)


# ---- file level: always fatal ------------------------------------------------------------
def _read_json(folder: Path, ann_file: Path) -> dict:
    if not folder.is_dir():
        raise DataError(f"{folder}: no such dataset folder; a dataset folder holds "
                        f"{ANNOTATIONS_FILE} (COCO person_keypoints) and {IMAGES_DIR}/")
    if not ann_file.is_file():
        raise DataError(f"{ann_file}: missing; a dataset folder holds {ANNOTATIONS_FILE} "
                        f"(COCO person_keypoints) next to {IMAGES_DIR}/")
    try:
        return json.loads(ann_file.read_bytes())
    except json.JSONDecodeError as e:
        raise DataError(f"{ann_file}: not valid JSON (line {e.lineno}, column {e.colno}: "
                        f"{e.msg}); write the file as COCO person_keypoints JSON") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{ann_file}: not UTF-8 text ({e.reason} at byte {e.start}); "
                        "write the file as COCO person_keypoints JSON") from None


def _check_coco_layout(data, where: str) -> None:
    if not isinstance(data, dict):
        raise DataError(f"{where}: the top level is a JSON {_json_type(data)}, expected an object "
                        "with 'images', 'annotations' and 'categories' lists (COCO format)")
    for key in COCO_LISTS:
        if key not in data:
            raise DataError(f"{where}: '{key}' missing; a COCO person_keypoints file has "
                            "'images', 'annotations' and 'categories' lists")
        if not isinstance(data[key], list):
            raise DataError(f"{where}: '{key}' is a JSON {_json_type(data[key])}, expected a list "
                            "(COCO format)")
    for pos, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise DataError(f"{where}: categories[{pos}]: 'id' missing or not an integer; "
                            "give every category an integer id")


def _keypoint_category(categories: list[dict], where: str) -> dict:
    if not categories:
        raise DataError(f"{where}: 'categories' is empty; add the person category with its "
                        "'keypoints' names (COCO person_keypoints format)")
    with_keypoints = [c for c in categories if "keypoints" in c]
    if not with_keypoints:
        cat = categories[0]
        raise DataError(f"{where}: category {cat['id']} ('{cat.get('name')}'): 'keypoints' "
                        "missing; a person_keypoints file names its keypoints in the category, "
                        "e.g. the 17 COCO names from 'nose' to 'right_ankle'")
    if len(with_keypoints) > 1:
        ids = ", ".join(str(c["id"]) for c in with_keypoints)
        raise DataError(f"{where}: categories {ids} all have 'keypoints'; keep one person "
                        "category per file")
    return with_keypoints[0]


def _category_schema(category: dict, where: str) -> KeypointSchema:
    names = category["keypoints"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(f"{where}: category {category['id']}: 'keypoints' must be a non-empty "
                        "list of keypoint names")
    try:
        return KeypointSchema.from_coco_category(category, where=where)
    except SchemaError as e:  # it names the file already
        raise DataError(str(e)) from None
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: category {category['id']}: {e}") from None


# ---- per image and per annotation: skippable ---------------------------------------------
def _check_image_entries(images: list, where: str, issues: list[DataIssue]):
    """Usable image entries by id, and every id declared (bad entries included)."""
    entries: dict[int, dict] = {}
    declared: set[int] = set()
    duplicated: set[int] = set()
    for pos, entry in enumerate(images):
        if not isinstance(entry, dict) or not _is_int(entry.get("id")):
            issues.append(DataIssue(where, "'id' missing or not an integer; give every image an "
                                    "integer id", where=f"images[{pos}]"))
            continue
        image_id = entry["id"]
        if image_id in declared:
            duplicated.add(image_id)
            continue
        declared.add(image_id)
        problem = _image_entry_problem(entry)
        if problem:
            issues.append(DataIssue(where, problem[1], image_id=image_id, field=problem[0]))
        else:
            entries[image_id] = entry
    for image_id in sorted(duplicated):
        issues.append(DataIssue(where, "is used by several entries of 'images'; give each image "
                                "its own id", image_id=image_id, field="id"))
        entries.pop(image_id, None)
    return entries, declared


def _image_entry_problem(entry: dict) -> tuple[str, str] | None:
    name = entry.get("file_name")
    if not isinstance(name, str) or not name:
        return "file_name", f"is {name!r}; give the image's file name inside {IMAGES_DIR}/"
    for key in ("width", "height"):
        value = entry.get(key)
        if not _is_int(value) or value <= 0:
            return key, f"is {value!r}; give the image's {key} in pixels (a positive integer)"
    return None


def _check_annotations(annotations: list, where: str, image_ids: set[int], person_category: int,
                       category_ids: set[int], schema: KeypointSchema,
                       issues: list[DataIssue]) -> list[_Person]:
    persons: list[_Person] = []
    for pos, ann in enumerate(annotations):
        result = _parse_annotation(ann, pos, where, image_ids, person_category, category_ids,
                                   schema)
        if isinstance(result, DataIssue):
            issues.append(result)
        elif result is not None:
            persons.append(result)
    counts = Counter(p.annotation_id for p in persons)
    for p in persons:  # every image holding a shared id is suspect, so each one is reported
        if counts[p.annotation_id] > 1:
            issues.append(DataIssue(where, "is used by several annotations; give each its own id",
                                    annotation_id=p.annotation_id, image_id=p.image_id,
                                    field="id"))
    return [p for p in persons if counts[p.annotation_id] == 1]


def _parse_annotation(ann, pos: int, where: str, image_ids: set[int], person_category: int,
                      category_ids: set[int], schema: KeypointSchema) -> _Person | DataIssue | None:
    """A person, an issue, or None for an annotation of another category."""
    if not isinstance(ann, dict) or not _is_int(ann.get("id")):
        return DataIssue(where, "'id' missing or not an integer; give every annotation an "
                         "integer id", where=f"annotations[{pos}]")
    ann_id = ann["id"]
    image_id = ann.get("image_id")
    if not _is_int(image_id) or image_id not in image_ids:
        return DataIssue(where, f"is {image_id!r}, which no entry of 'images' has; add the image "
                         "or remove the annotation", annotation_id=ann_id, field="image_id")

    def issue(field: str, reason: str) -> DataIssue:
        return DataIssue(where, reason, image_id=image_id, annotation_id=ann_id, field=field)

    category_id = ann.get("category_id")
    if not _is_int(category_id) or category_id not in category_ids:
        return issue("category_id", f"is {category_id!r}, which no entry of 'categories' has; "
                     f"use the person category id {person_category}")
    if category_id != person_category:
        return None
    iscrowd = ann.get("iscrowd", 0)
    if iscrowd not in (0, 1) or isinstance(iscrowd, float):
        return issue("iscrowd", f"is {iscrowd!r}; use 0 for a person, 1 for a crowd region")
    box, problem = _numbers(ann.get("bbox"), 4)
    if problem:
        return issue("bbox", f"{problem}; give [x, y, width, height] in pixels")
    if box[2] < 0 or box[3] < 0:
        return issue("bbox", f"has a negative width or height ({box[2]:g} x {box[3]:g}); give "
                     "[x, y, width, height] with width, height >= 0")
    keypoints = None
    if "keypoints" in ann or not iscrowd:
        keypoints, problem = _keypoints(ann.get("keypoints"), schema)
        if problem:
            return issue("keypoints", problem)
    area = ann.get("area", float(box[2] * box[3]))
    if isinstance(area, bool) or not isinstance(area, (int, float)) or not np.isfinite(area) \
            or area < 0:
        return issue("area", f"is {area!r}; give the person's segment area in square pixels "
                     "(or drop the field: the box area is used)")
    xyxy = np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]], dtype=np.float32)
    return _Person(ann_id, image_id, bool(iscrowd), xyxy, keypoints, float(area), ann)


def _keypoints(value, schema: KeypointSchema) -> tuple[np.ndarray | None, str | None]:
    k = schema.num_keypoints
    fix = ("give x, y, v for every keypoint of the category in order, 0, 0, 0 for an "
           "unlabelled one")
    numbers, problem = _numbers(value, 3 * k, f" ({k} x 3)")
    if problem:
        if numbers is not None:  # a non-finite value: say which keypoint it is
            j = int(np.flatnonzero(~np.isfinite(numbers))[0])
            problem += f" (keypoint '{schema.keypoints[j // 3]}' {'xyv'[j % 3]})"
        return None, f"{problem}; {fix}"
    kps = numbers.reshape(k, 3).astype(np.float32)
    bad_v = ~np.isin(kps[:, 2], VISIBILITY_VALUES)
    if bad_v.any():
        j = int(np.flatnonzero(bad_v)[0])
        return None, (f"has visibility {kps[j, 2]:g} for keypoint '{schema.keypoints[j]}'; use "
                      "v = 0 (not labelled), 1 (labelled, hidden) or 2 (labelled, visible)")
    kps[kps[:, 2] == 0, :2] = 0.0
    return kps, None


def _numbers(value, count: int, unit: str = "") -> tuple[np.ndarray | None, str | None]:
    """value as a float64 array of `count` finite numbers, or a reason it is not.

    For non-finite numbers the array comes back with the reason, to locate them.
    """
    if value is None:
        return None, "is missing"
    if not isinstance(value, list):
        return None, f"is a JSON {_json_type(value)}, expected a list of {count} numbers"
    if len(value) != count:
        return None, f"has {len(value)} numbers, expected {count}{unit}"
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):  # ragged nesting, huge integers
        array = None
    if array is None or array.ndim != 1 or array.dtype.kind not in "iuf":
        return None, "holds something other than plain numbers"
    array = array.astype(np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        j = int(np.flatnonzero(~finite)[0])
        return array, f"holds {value[j]} at position {j}, expected a finite number"
    return array, None


def _check_image_files(entries: dict[int, dict], images_dir: Path, issues: list[DataIssue],
                       progress: bool) -> None:
    """Each image exists, has a readable header, and the size the json says (no decoding)."""
    for entry in tqdm(entries.values(), desc="checking images", unit="img", disable=not progress):
        path = images_dir / entry["file_name"]
        issue = _image_file_issue(path, entry)
        if issue:
            issues.append(issue)


def _image_file_issue(path: Path, entry: dict) -> DataIssue | None:
    image_id = entry["id"]
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        return DataIssue(str(path), f"does not exist; put the image in {path.parent}/ or fix "
                         f"'file_name' in {ANNOTATIONS_FILE}", image_id=image_id, field="file_name")
    except Exception as e:  # noqa: BLE001  PIL raises several types for bad bytes
        return DataIssue(str(path), f"cannot be read as an image ({type(e).__name__}: {e}); "
                         "replace it with the original file", image_id=image_id)
    if (width, height) != (entry["width"], entry["height"]):
        field = "width" if height == entry["height"] else "height" if width == entry["width"] \
            else "width/height"
        return DataIssue(str(path), f"in {ANNOTATIONS_FILE} is {entry['width']}x{entry['height']} "
                         f"(width x height) but the file is {width}x{height}; fix the entry or "
                         "replace the file (coordinates refer to the stored pixels)",
                         image_id=image_id, field=field)
    return None


# ---- the index ---------------------------------------------------------------------------
def _index(data: dict, category: dict, entries: list[dict], persons: list[_Person]) -> COCO:
    """pycocotools' COCO over the kept images and their person annotations (crowds included)."""
    kept = {k: v for k, v in data.items() if k not in COCO_LISTS}
    kept["images"] = entries
    kept["annotations"] = [_eval_entry(p, len(category["keypoints"])) for p in persons]
    kept["categories"] = [category]
    coco = COCO()
    coco.dataset = kept
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress lines
        coco.createIndex()
    return coco


def _eval_entry(person: _Person, k: int) -> dict:
    """The annotation as in the file, plus what COCOeval reads and the file may leave out:
    'area' (the box area then), 'num_keypoints', and a crowd region's keypoints."""
    entry = dict(person.entry)
    if person.keypoints is None:  # a crowd region without keypoints
        entry["keypoints"] = [0] * (3 * k)
        entry.setdefault("num_keypoints", 0)
    else:
        entry.setdefault("num_keypoints", int((person.keypoints[:, 2] > 0).sum()))
    entry.setdefault("area", person.area)
    return entry


def _record(entry: dict, persons: list[_Person], images_dir: Path, k: int) -> ImageRecord:
    people = [p for p in persons if not p.iscrowd]
    crowds = [p for p in persons if p.iscrowd]
    return ImageRecord(
        image_id=entry["id"],
        file_name=entry["file_name"],
        path=images_dir / entry["file_name"],
        width=entry["width"],
        height=entry["height"],
        annotation_ids=np.array([p.annotation_id for p in people], dtype=np.int64),
        boxes=np.array([p.box for p in people], dtype=np.float32).reshape(-1, 4),
        keypoints=np.array([p.keypoints for p in people], dtype=np.float32).reshape(-1, k, 3),
        areas=np.array([p.area for p in people], dtype=np.float32),
        crowd_boxes=np.array([p.box for p in crowds], dtype=np.float32).reshape(-1, 4),
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
