"""bench/clip_pool.py: a pool of clips, each scene as several frames that move together."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from bench_scripts import load_bench
from PIL import Image

from clickpose.data.coco import read_coco_dataset


@pytest.fixture(scope="module")
def clip_pool():
    module = load_bench("clip_pool")
    yield module
    sys.modules.pop(module.__name__, None)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from bench.synthetic_sets import cached_dataset

    return cached_dataset(tmp_path_factory.mktemp("scenes"), 3, seed=4, size=96, style="photo")


def test_frames_of_a_scene_move_its_persons_with_the_pixels(clip_pool, scenes, tmp_path):
    out = clip_pool.clip_dataset(scenes, frames=3, images=7, seed=0, out=tmp_path / "clips")
    coco = json.loads((out / "annotations.json").read_text())
    names = [im["file_name"] for im in coco["images"]]
    assert names == ["000001-f0.jpg", "000001-f1.jpg", "000001-f2.jpg", "000002-f0.jpg",
                     "000002-f1.jpg", "000002-f2.jpg", "000003-f0.jpg"]   # 7: the last short
    assert [clip_pool.scene_of(n) for n in names] == ["000001"] * 3 + ["000002"] * 3 + ["000003"]
    assert clip_pool.scene_of("photo-000007.jpg") == "photo-000007"     # not a frame
    source = json.loads((scenes / "annotations.json").read_text())
    first = [a for a in source["annotations"] if a["image_id"] == source["images"][0]["id"]]
    frame0 = [a for a in coco["annotations"] if a["image_id"] == 1]
    assert [a["keypoints"] for a in frame0] == [a["keypoints"] for a in first]   # frame 0 as is

    # Frame 1 is the scene moved by (dx, dy): find the shift from the pixels, then every
    # labelled keypoint in view moved by exactly that.
    a = np.asarray(Image.open(out / "images" / names[0]).convert("L"), dtype=np.float32)
    b = np.asarray(Image.open(out / "images" / names[1]).convert("L"), dtype=np.float32)
    limit = round(clip_pool.MAX_SHIFT * 96)
    errors = {(dx, dy): np.abs(clip_pool.shift_image(a[..., None], dx, dy)[..., 0] - b)[
        limit:-limit, limit:-limit].mean() for dx in range(-limit, limit + 1)
        for dy in range(-limit, limit + 1)}
    dx, dy = min(errors, key=errors.get)
    frame1 = [a for a in coco["annotations"] if a["image_id"] == 2]
    for before, after in zip(frame0, frame1):
        kb, ka = np.reshape(before["keypoints"], (-1, 3)), np.reshape(after["keypoints"], (-1, 3))
        shown = ka[:, 2] > 0
        np.testing.assert_allclose(ka[shown, :2], kb[shown, :2] + [dx, dy])
        assert after["num_keypoints"] == int(shown.sum())
    assert len(read_coco_dataset(out).records) == 7        # a dataset folder like any other


def test_a_keypoint_that_leaves_the_frame_is_unlabelled_and_an_empty_person_dropped(clip_pool):
    person = {"keypoints": [5, 5, 2, 90, 50, 2, 0, 0, 0], "bbox": [4, 4, 90, 50],
              "num_keypoints": 2}
    moved = clip_pool.shift_person(person, 8, 0, width=96, height=96)
    assert moved["keypoints"] == [13, 5, 2, 0, 0, 0, 0, 0, 0] and moved["num_keypoints"] == 1
    assert moved["bbox"] == [12, 4, 84, 50]                  # clipped at the frame's edge
    assert clip_pool.shift_person({**person, "keypoints": [90, 50, 2]}, 8, 0, 96, 96) is None
    image = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    np.testing.assert_array_equal(clip_pool.shift_image(image, 1, 0)[..., 0],
                                  [[0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10]])


def test_too_few_scenes_or_frames_are_refused_naming_the_fix(clip_pool, scenes, tmp_path):
    with pytest.raises(SystemExit, match="3 scenes for 10 frames of 2; generate at least 5"):
        clip_pool.clip_dataset(scenes, frames=2, images=10, seed=0, out=tmp_path / "c")
    with pytest.raises(SystemExit, match="--frames-per-scene 0"):
        clip_pool.clip_dataset(scenes, frames=0, images=3, seed=0, out=tmp_path / "c")
    assert not (tmp_path / "c").exists()
