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


def test_ap_by_look_scores_each_look_on_its_own_images(mixed_pool, tmp_path):
    from clickpose.evaluate.inputs import schema_for

    folder = mixed_pool.mixed_dataset(tmp_path, images=4, seed=3, size=64, style="art",
                                      photo_share=0.5)
    truth = json.loads((folder / "annotations.json").read_text())
    looks = {im["id"]: mixed_pool.look_of(im["file_name"]) for im in truth["images"]}
    # The art persons predicted exactly, the photo persons one image width away.
    results = []
    for a in truth["annotations"]:
        keypoints = list(a["keypoints"])
        if looks[a["image_id"]] == "photo":
            keypoints[0::3] = [x + 64.0 for x in keypoints[0::3]]
        results.append({"image_id": a["image_id"], "category_id": 1, "keypoints": keypoints,
                        "score": 0.9})
    schema = schema_for(truth, None, "annotations.json")
    by_look = mixed_pool.ap_by_look(truth, results, schema)
    assert by_look["art"] == pytest.approx(1.0) and by_look["photo"] == pytest.approx(0.0)
    assert set(mixed_pool.look_image_ids(truth)) == {"art", "photo"}
    plain = mixed_pool.mixed_dataset(tmp_path, 2, 3, 64, "art", 0.0)
    assert mixed_pool.look_image_ids(json.loads((plain / "annotations.json").read_text())) == {}


def test_campaign_looks_finds_every_kept_model_and_averages_the_seeds(tmp_path):
    looks = load_bench("campaign_looks")
    for seed in (0, 1):
        folder = tmp_path / f"seed-{seed}"
        (folder / "round-000").mkdir(parents=True)
        (folder / "round-000" / "result.json").write_text(json.dumps(
            {"seed": seed, "checkpoint": f"c{seed}", "config": {"val": "v"}}))
        (folder / "k_center").mkdir()
        (folder / "k_center" / "result.json").write_text(json.dumps(
            {"strategy": "k_center", "seed": seed,
             "rounds": [{"round": 0}, {"round": 1}, {"round": 2}]}))
    last = looks.campaign_models(tmp_path, "last")
    assert [(m["seed"], m["strategy"], m["round"]) for m in last] == [
        (0, "start", 0), (0, "k_center", 2), (1, "start", 0), (1, "k_center", 2)]
    assert last[1]["checkpoint"].endswith("seed-0/k_center/round-002/train/last")
    assert len(looks.campaign_models(tmp_path, "all")) == 6
    lines = [{"seed": s, "strategy": "k_center", "round": 2, "ap": ap,
              "ap_by_look": {"art": ap / 2, "photo": ap}} for s, ap in ((0, 0.2), (1, 0.4))]
    mean, = looks.mean_by_strategy(lines)
    assert mean["ap"] == pytest.approx(0.3) and mean["ap_by_look"]["art"] == pytest.approx(0.15)
    sys.modules.pop(looks.__name__, None)
