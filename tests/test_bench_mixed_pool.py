"""bench/mixed_pool.py: a pool of two looks, merged into one COCO folder."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bench_scripts import load_bench

from clickpose.data.coco import read_coco_dataset


@pytest.fixture(scope="module")
def mixed_pool():
    module = load_bench("mixed_pool")
    yield module
    sys.modules.pop(module.__name__, None)


def test_mixed_folder_holds_each_look_in_its_share_with_fresh_ids(mixed_pool, tmp_path):
    folder = mixed_pool.mixed_dataset(tmp_path, images=5, seed=3, size=64, style="art",
                                      photo_share=0.6)
    coco = json.loads((folder / "annotations.json").read_text())
    names = [im["file_name"] for im in coco["images"]]
    assert sorted(mixed_pool.look_of(n) for n in names) == ["art"] * 2 + ["photo"] * 3
    assert sorted(p.name for p in (folder / "images").iterdir()) == sorted(names)
    assert [im["id"] for im in coco["images"]] == [1, 2, 3, 4, 5]
    assert [a["id"] for a in coco["annotations"]] == list(range(1, len(coco["annotations"]) + 1))

    # Each person still belongs to its own scene: the parts' labels, image by image.
    for look, part in coco["info"]["parts"].items():
        source = json.loads((Path(part) / "annotations.json").read_text())
        for image in source["images"]:
            merged = next(im for im in coco["images"]
                          if im["file_name"] == f"{look}-{image['file_name']}")
            want = [a["keypoints"] for a in source["annotations"] if a["image_id"] == image["id"]]
            got = [a["keypoints"] for a in coco["annotations"] if a["image_id"] == merged["id"]]
            assert got == want
    assert len(read_coco_dataset(folder).records) == 5   # a dataset folder like any other

    # Cached: the second call returns the same folder without drawing again.
    before = (folder / "annotations.json").stat().st_mtime_ns
    assert mixed_pool.mixed_dataset(tmp_path, 5, 3, 64, "art", 0.6) == folder
    assert (folder / "annotations.json").stat().st_mtime_ns == before


def test_no_share_is_the_plain_folder_and_a_bad_share_is_refused(mixed_pool, tmp_path):
    plain = mixed_pool.mixed_dataset(tmp_path, images=2, seed=3, size=64, style="art",
                                     photo_share=0.0)
    assert plain.name.startswith("art-") and mixed_pool.look_of("000001.jpg") is None
    with pytest.raises(SystemExit, match="--photo-share 1.0: give a share in \\[0, 1\\)"):
        mixed_pool.check_share(1.0, "--photo-share")
