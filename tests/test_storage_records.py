"""Dataset versions and the model registry, on a local folder and on the real S3 server."""
from __future__ import annotations

import io
import threading

import pytest
from PIL import Image

from storage import (
    ConflictError,
    DatasetFormatError,
    Datasets,
    ModelRegistry,
    ObjectNotFoundError,
)


def _image_file(path, color):
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def _coco(images: dict[str, list[float]]) -> dict:
    """A COCO person_keypoints set: one person per image, 17 keypoints starting at (x, y)."""
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    for i, (name, (x, y)) in enumerate(sorted(images.items()), start=1):
        coco["images"].append({"id": i, "file_name": name, "width": 32, "height": 24})
        keypoints = [v for k in range(17) for v in (x + k, y, 2)]
        coco["annotations"].append({"id": 100 + i, "image_id": i, "category_id": 1, "iscrowd": 0,
                                    "keypoints": keypoints, "num_keypoints": 17, "bbox": [x, y, 17, 1]})
    return coco


def test_dataset_versions_rounds_and_diff(store, tmp_path):
    datasets = Datasets(store)
    files = {f"images/img {i}.png": _image_file(tmp_path / f"{i}.png", (40 * i, 0, 0)) for i in range(4)}
    pool = datasets.ingest_images(files)
    v1 = datasets.set_pool("people", pool, expected_version=0)
    assert (v1.number, v1.pool_size) == (1, 4)
    assert {p.key for p in datasets.pool(v1)} == set(files)
    assert all(store.info(p.key).sha256 == p.sha256 for p in pool)

    round1 = _coco({"images/img 0.png": [1, 2], "images/img 1.png": [3, 4]})
    selection = [{"image": "images/img 0.png", "score": 0.93, "details": {"persons": [0.9]}},
                 {"image": "images/img 1.png", "score": 0.71}]
    clicks = [{"image": "images/img 0.png", "clicks": 3, "seconds": 11.5},
              {"image": "images/img 1.png", "clicks": 0, "seconds": 2.0}]
    v2 = datasets.add_round("people", 1, round1, expected_version=1, selection=selection, annotations=clicks)
    round2 = _coco({"images/img 0.png": [5, 2], "images/img 1.png": [3, 4], "images/img 2.png": [1, 1]})
    v3 = datasets.add_round("people", 2, round2, expected_version=2, selection=selection[:1], annotations=[])

    assert datasets.versions("people") == [1, 2, 3]
    assert datasets.labels(v3) == round2 and datasets.labels(v3, 1) == round1
    assert datasets.selection(v2, 1) == selection and datasets.annotations(v2, 1) == clicks
    assert datasets.version("people").number == 3

    d12 = datasets.diff("people", 1, 2)
    assert d12.rounds_added == [1] and d12.labeled_added == ["images/img 0.png", "images/img 1.png"]
    assert d12.pool_added == [] and not d12.is_empty
    d23 = datasets.diff("people", 2, 3)
    assert d23.rounds_added == [2] and d23.labeled_added == ["images/img 2.png"]
    assert d23.labels_changed == ["images/img 0.png"]  # keypoints moved; image 1 untouched
    assert "labels changed 1" in d23.summary()
    assert datasets.diff("people", 3, 3).is_empty

    # The pool grows and one image is re-encoded: both show up in the diff.
    extra = datasets.ingest_images({"images/img 4.png": _image_file(tmp_path / "4.png", (0, 9, 9)),
                                    "images/img 3.png": _image_file(tmp_path / "3b.png", (1, 2, 3))})
    keep = [p for p in datasets.pool(v3) if p.key != "images/img 3.png"]
    datasets.set_pool("people", keep + extra, expected_version=3)
    d34 = datasets.diff("people", 3, 4)
    assert d34.pool_added == ["images/img 4.png"] and d34.pool_changed == ["images/img 3.png"]
    assert datasets.labels(datasets.version("people")) == round2  # rounds carried over


def test_dataset_round_commit_is_compare_and_swap(store):
    datasets = Datasets(store)
    datasets.add_round("people", 1, _coco({"a.png": [0, 0]}), expected_version=0)
    datasets.add_round("people", 2, _coco({"a.png": [1, 0]}), expected_version=1)
    with pytest.raises(ConflictError, match="expected version 1"):
        datasets.add_round("people", 2, _coco({"a.png": [9, 9]}), expected_version=1)
    assert datasets.labels(datasets.version("people")) == _coco({"a.png": [1, 0]})


def test_dataset_records_are_validated(store):
    datasets = Datasets(store)
    from storage import PoolImage

    for bad in ("0" * 63, "../" + "0" * 61, "Z" * 64):
        with pytest.raises(DatasetFormatError, match="'sha256' must be 64 lowercase hex"):
            datasets.set_pool("p", [PoolImage("a.png", 3, bad)], expected_version=0)
    v1 = datasets.set_pool("p", [PoolImage("a.png", 3, "0" * 64)], expected_version=0)
    with pytest.raises(DatasetFormatError, match="entry 0: image 'b.png' is not in the pool"):
        datasets.add_round("p", 1, _coco({"a.png": [0, 0]}), v1.number, selection=[{"image": "b.png", "score": 1}])
    with pytest.raises(DatasetFormatError, match="record 0 \\(a.png\\) needs 'clicks'"):
        datasets.add_round("p", 1, _coco({"a.png": [0, 0]}), v1.number, annotations=[{"image": "a.png"}])
    with pytest.raises(DatasetFormatError, match="'annotations' is missing"):
        datasets.add_round("p", 1, {"images": [], "categories": []}, v1.number)
    assert datasets.versions("p") == [1]
    with pytest.raises(ObjectNotFoundError, match="no round"):
        datasets.labels(v1)


def test_model_registry(store, tmp_path):
    registry = ModelRegistry(store)
    schema = {"name": "coco17", "keypoints": ["nose"] * 17}
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"weights-1" * 1000)
    (tmp_path / "config.json").write_text('{"preset": "tiny"}')
    m1 = registry.register([ckpt, tmp_path / "config.json"], config={"preset": "tiny"}, schema=schema,
                           metrics={"ap": 0.61}, dataset={"name": "people", "version": 2})
    ckpt.write_bytes(b"weights-2" * 1000)
    m2 = registry.register({"model.safetensors": ckpt}, config={"preset": "tiny", "lr": 1e-4}, schema=schema,
                           metrics={"ap": 0.70}, dataset={"name": "people", "version": 3}, parent=m1.id)
    ckpt.write_bytes(b"weights-3" * 1000)
    m3 = registry.register({"model.safetensors": ckpt}, config={}, schema=schema,
                           metrics={"ap": 0.65, "noc85": 3.1}, dataset={"name": "people", "version": 4},
                           parent=m2.id)
    assert [m.id for m in registry.list()] == ["m0001", "m0002", "m0003"]
    assert registry.best("ap").id == "m0002"
    assert registry.best("noc85", mode="min").id == "m0003"
    with pytest.raises(ObjectNotFoundError, match="no model has metric 'ar'"):
        registry.best("ar")
    assert registry.current() is None
    registry.promote("m0002")
    registry.promote("m0003")
    assert registry.current().id == "m0003"
    assert [p["model"] for p in registry.promotions()] == ["m0002", "m0003"]
    lineage = registry.lineage(m3.id)
    assert [m.id for m in lineage] == ["m0003", "m0002", "m0001"]
    assert [m.dataset["version"] for m in lineage] == [4, 3, 2]
    files = registry.download("m0001", tmp_path / "down")
    assert files["model.safetensors"].read_bytes() == b"weights-1" * 1000
    assert files["config.json"].read_text() == '{"preset": "tiny"}'
    with pytest.raises(ObjectNotFoundError, match="no model 'm0042'"):
        registry.register([ckpt], config={}, schema=schema, metrics={}, dataset={"name": "p", "version": 1},
                          parent="m0042")


def test_concurrent_registrations_get_distinct_ids(store_spec, tmp_path):
    errors, ids = [], []

    def register(i: int) -> None:
        path = tmp_path / f"w{i}.bin"
        path.write_bytes(bytes([i]) * 100)
        try:
            ids.append(ModelRegistry(store_spec.open()).register(
                [path], config={}, schema={}, metrics={"ap": i / 10}, dataset={"name": "d", "version": 1}).id)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(ids) == ["m0001", "m0002", "m0003", "m0004"]
    registry = ModelRegistry(store_spec.open())
    assert registry.best("ap").metrics["ap"] == pytest.approx(0.3)
