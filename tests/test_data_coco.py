"""COCO keypoint folders: real images load, every bad input is named precisely, batches pad."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from clickpose.data import (
    CocoKeypointDataset,
    DataError,
    collate_batch,
    eval_transforms,
    load_coco_dataset,
    load_image,
    read_coco_dataset,
    train_transforms,
)
from clickpose.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from clickpose.keypoints import SchemaError, coco17, coco17_plus

MINI = Path(__file__).resolve().parent / "data" / "coco-mini"
CROWD_ANN = 900100370162
PERSONS = {69468: 1, 70133: 0, 183872: 1, 370162: 13, 489520: 9}
LABELLED = {69468: 1, 70133: 0, 183872: 1, 370162: 11, 489520: 2}


def raw_json() -> dict:
    return json.loads((MINI / "annotations.json").read_text())


def anns_of(data: dict, image_id: int) -> list[dict]:
    return [a for a in data["annotations"] if a["image_id"] == image_id]


@pytest.fixture
def copy(tmp_path) -> Path:
    """A writable copy of coco-mini to break."""
    folder = tmp_path / "ds"
    shutil.copytree(MINI, folder)
    return folder


def write_json(folder: Path, data) -> None:
    (folder / "annotations.json").write_text(json.dumps(data))


# ---- the real images -------------------------------------------------------------------------
def test_loads_real_coco_images_with_crowd_and_box_only_persons():
    index = read_coco_dataset(MINI)
    data = raw_json()
    assert index.schema == coco17()
    assert index.report.ok and index.category_id == 1
    assert [r.image_id for r in index.records] == [im["id"] for im in data["images"]]
    assert {r.image_id: r.num_persons for r in index.records} == PERSONS
    assert {r.image_id: r.num_labelled_persons for r in index.records} == LABELLED
    by_id = {r.image_id: r for r in index.records}

    # the crowd annotation is an ignore region, not a person
    crowd = next(a for a in data["annotations"] if a["iscrowd"])
    assert crowd["id"] == CROWD_ANN
    x, y, w, h = crowd["bbox"]
    assert by_id[370162].crowd_boxes.tolist() == [[x, y, x + w, y + h]]
    assert CROWD_ANN not in by_id[370162].annotation_ids
    assert sum(len(r.crowd_boxes) for r in index.records) == 1

    # every non-crowd annotation is a person, keypoints as in the file, boxes xyxy
    for record in index.records:
        persons = [a for a in anns_of(data, record.image_id) if not a["iscrowd"]]
        assert record.annotation_ids.tolist() == [a["id"] for a in persons]
        for i, ann in enumerate(persons):
            kps = np.array(ann["keypoints"], dtype=np.float32).reshape(17, 3)
            assert np.array_equal(record.keypoints[i], kps)
            bx, by, bw, bh = ann["bbox"]
            assert record.boxes[i].tolist() == pytest.approx([bx, by, bx + bw, by + bh])
            assert record.areas[i] == pytest.approx(ann["area"])
            if ann["num_keypoints"] == 0:  # a person with no keypoints stays, as a box
                assert (record.keypoints[i] == 0).all()
    assert record.path == MINI / "images" / record.file_name

    # pycocotools indexes the same annotations (crowd included, as COCOeval expects)
    assert len(index.coco.getAnnIds()) == len(data["annotations"]) == 25
    assert index.coco.getAnnIds(imgIds=[370162], iscrowd=True) == [CROWD_ANN]


def test_dataset_item_is_normalised_image_and_pixel_target():
    dataset = load_coco_dataset(MINI)
    assert isinstance(dataset, CocoKeypointDataset) and len(dataset) == 5
    i = [r.image_id for r in dataset.records].index(370162)
    image, target = dataset[i]
    record = dataset.records[i]
    assert image.shape == (3, 400, 640) and image.dtype == torch.float32
    pixels = np.asarray(Image.open(record.path).convert("RGB"), dtype=np.float32) / 255
    expected = (pixels[7, 11] - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert image[:, 7, 11].tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    assert target["image_id"] == 370162
    assert target["orig_size"].tolist() == [400, 640] == target["size"].tolist()
    assert target["boxes"].shape == (13, 4) and target["keypoints"].shape == (13, 17, 3)
    assert target["area"].shape == (13,) and target["crowd_boxes"].shape == (1, 4)
    assert "iscrowd" not in target
    assert torch.equal(target["keypoints"], torch.from_numpy(record.keypoints))
    # boxes stay inside the image (the crowd box's x + w = 639 < 640 already)
    assert (target["boxes"][:, 2] <= 640).all() and (target["boxes"][:, 3] <= 400).all()


def test_boxes_are_clipped_to_the_image_and_empty_ones_dropped(copy):
    data = raw_json()
    first, second = anns_of(data, 183872)[0], anns_of(data, 489520)[0]
    first["bbox"] = [600.0, -10.0, 100.0, 50.0]  # sticks out right and top of 640 x 426
    second["bbox"] = [510.0, 10.0, 20.0, 20.0]  # entirely right of a 500 px wide image
    write_json(copy, data)
    dataset = load_coco_dataset(copy)
    by_id = {r.image_id: i for i, r in enumerate(dataset.records)}
    _, target = dataset[by_id[183872]]
    assert target["boxes"].tolist() == [[600.0, 0.0, 640.0, 40.0]]
    _, target = dataset[by_id[489520]]
    assert second["id"] not in target["annotation_ids"].tolist()
    assert len(target["boxes"]) == 8


def test_seeded_dataset_is_reproducible_per_epoch():
    transforms = train_transforms(coco17(), sizes=[96, 128], max_size=200)
    a = load_coco_dataset(MINI, transforms=transforms, seed=5)
    b = load_coco_dataset(MINI, transforms=transforms, seed=5)
    i = [r.image_id for r in a.records].index(370162)
    image_a, target_a = a[i]
    image_b, target_b = b[i]
    assert torch.equal(image_a, image_b)
    assert torch.equal(target_a["keypoints"], target_b["keypoints"])
    changed = False
    for epoch in range(1, 6):
        b.set_epoch(epoch)
        image_b, _ = b[i]
        changed |= image_b.shape != image_a.shape or not torch.equal(image_b, image_a)
    assert changed


def test_set_epoch_reaches_persistent_workers():
    transforms = train_transforms(coco17(), sizes=[64, 80, 96], max_size=160)
    subset = list(range(3))

    def expected(epoch):
        dataset = load_coco_dataset(MINI, transforms=transforms, seed=2)
        dataset.set_epoch(epoch)
        return [dataset[i][0] for i in subset]

    dataset = load_coco_dataset(MINI, transforms=transforms, seed=2)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, subset), batch_size=None,
                                         num_workers=1, persistent_workers=True)
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        got = [image for image, _ in loader]
        assert all(torch.equal(a, b) for a, b in zip(got, expected(epoch), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(expected(0), expected(1), strict=True))


def test_load_image_keeps_stored_orientation(tmp_path):
    # A 40 x 20 bitmap tagged "rotate 90 degrees" (EXIF orientation 6): labels refer to the
    # stored pixels, so the loader must not turn it.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (40, 20), (200, 10, 10)).save(path, exif=exif.tobytes())
    image = load_image(path)
    assert image.size == (40, 20) and image.mode == "RGB"


def test_truncated_image_is_named_when_decoded(copy):
    path = copy / "images" / "000000183872.jpg"
    path.write_bytes(path.read_bytes()[:5000])  # the header survives, the pixels do not
    dataset = load_coco_dataset(copy)  # the cheap header check passes
    i = [r.image_id for r in dataset.records].index(183872)
    with pytest.raises(DataError, match="000000183872.jpg: cannot decode the image"):
        dataset[i]


# ---- bad inputs: exact messages --------------------------------------------------------------
def break_json(folder: Path, edit) -> dict:
    data = raw_json()
    edit(data)
    write_json(folder, data)
    return data


def first_person(data: dict, image_id: int = 183872) -> dict:
    return anns_of(data, image_id)[0]


def test_not_json(copy):
    (copy / "annotations.json").write_text('{"images": [\n  {"id": 1,, }')
    with pytest.raises(DataError) as e:
        read_coco_dataset(copy)
    assert str(e.value) == (
        f"{copy / 'annotations.json'}: not valid JSON (line 2, column 12: Expecting property "
        "name enclosed in double quotes); write the file as COCO person_keypoints JSON")


def test_missing_folder_and_missing_json(tmp_path):
    with pytest.raises(DataError, match="no such dataset folder"):
        read_coco_dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"annotations.json: missing; a dataset folder holds"):
        read_coco_dataset(tmp_path)


@pytest.mark.parametrize("content, expected", [
    ([], ("the top level is a JSON array, expected an object with 'images', 'annotations' and "
          "'categories' lists (COCO format)")),
    ({"images": [], "categories": []}, ("'annotations' missing; a COCO person_keypoints file has "
                                        "'images', 'annotations' and 'categories' lists")),
    ({"images": {}, "annotations": [], "categories": []},
     "'images' is a JSON object, expected a list (COCO format)"),
    ({"images": [], "annotations": [], "categories": []},
     "'categories' is empty; add the person category with its 'keypoints' names"),
])
def test_json_not_coco(copy, content, expected):
    write_json(copy, content)
    with pytest.raises(DataError) as e:
        read_coco_dataset(copy)
    assert str(e.value).startswith(f"{copy / 'annotations.json'}: {expected}")


def test_category_without_keypoints(copy):
    break_json(copy, lambda d: d["categories"][0].pop("keypoints"))
    with pytest.raises(DataError) as e:
        read_coco_dataset(copy, skip_bad=True)  # a file-level problem: never skippable
    assert str(e.value).startswith(
        f"{copy / 'annotations.json'}: category 1 ('person'): 'keypoints' missing; a "
        "person_keypoints file names its keypoints in the category")


def test_keypoint_list_of_50_numbers(copy):
    data = break_json(copy, lambda d: first_person(d)["keypoints"].pop())
    ann_id = first_person(data)["id"]
    with pytest.raises(DataError) as e:
        read_coco_dataset(copy)
    assert str(e.value) == (
        f"{copy / 'annotations.json'}: annotation {ann_id} (image 183872): 'keypoints' has 50 "
        "numbers, expected 51 (17 x 3); give x, y, v for every keypoint of the category in "
        "order, 0, 0, 0 for an unlabelled one")
    assert [(i.image_id, i.annotation_id, i.field) for i in e.value.issues] == [
        (183872, ann_id, "keypoints")]


def test_missing_image_file(copy):
    (copy / "images" / "000000070133.jpg").unlink()
    with pytest.raises(DataError) as e:
        read_coco_dataset(copy)
    path = copy / "images" / "000000070133.jpg"
    assert str(e.value) == (
        f"{path}: image 70133: 'file_name' does not exist; put the image in {path.parent}/ or "
        "fix 'file_name' in annotations.json")


def test_corrupt_image_bytes(copy):
    path = copy / "images" / "000000183872.jpg"
    path.write_bytes(b"this is not a jpeg" * 100)
    with pytest.raises(DataError) as e:
        read_coco_dataset(copy)
    message = str(e.value)
    assert message.startswith(f"{path}: image 183872: cannot be read as an image "
                              "(UnidentifiedImageError")
    assert message.endswith("replace it with the original file")


def test_size_mismatch(copy):
    break_json(copy, lambda d: next(im for im in d["images"] if im["id"] == 489520)
               .update(width=501))
    with pytest.raises(DataError) as e:
        read_coco_dataset(copy)
    assert str(e.value) == (
        f"{copy / 'images' / '000000489520.jpg'}: image 489520: 'width' in annotations.json is "
        "501x375 (width x height) but the file is 500x375; fix the entry or replace the file "
        "(coordinates refer to the stored pixels)")


def test_non_finite_keypoint_and_bbox(copy):
    def edit(d):
        first_person(d)["keypoints"][4] = float("nan")  # left_eye y
        first_person(d, 69468)["bbox"][2] = float("inf")
    data = break_json(copy, edit)
    with pytest.raises(DataError) as e:
        read_coco_dataset(copy)
    where = copy / "annotations.json"
    assert str(e.value).splitlines() == [
        "2 problem(s) in the dataset",
        (f"{where}: annotation {first_person(data, 69468)['id']} (image 69468): 'bbox' holds "
         "inf at position 2, expected a finite number; give [x, y, width, height] in pixels"),
        (f"{where}: annotation {first_person(data)['id']} (image 183872): 'keypoints' holds nan "
         "at position 4, expected a finite number (keypoint 'left_eye' y); give x, y, v for "
         "every keypoint of the category in order, 0, 0, 0 for an unlabelled one"),
    ]


def test_bad_visibility_and_unknown_image(copy):
    def edit(d):
        first_person(d)["keypoints"][2] = 3
        d["annotations"].append(dict(first_person(d, 69468), id=5, image_id=999))
    break_json(copy, edit)
    with pytest.raises(DataError) as e:
        read_coco_dataset(copy)
    messages = [str(i) for i in e.value.issues]
    assert any("'keypoints' has visibility 3 for keypoint 'nose'; use v = 0" in m for m in messages)
    assert f"{copy / 'annotations.json'}: annotation 5: 'image_id' is 999, which no entry of " \
           "'images' has; add the image or remove the annotation" in messages


def test_given_schema_must_match_the_file(copy):
    assert read_coco_dataset(MINI, schema=coco17()).schema == coco17()
    with pytest.raises(SchemaError) as e:
        read_coco_dataset(MINI, schema=coco17_plus(["head_top"]))
    assert str(e.value).startswith(f"{MINI / 'annotations.json'}: keypoint schema mismatch: "
                                   "expected 18 keypoints")


# ---- skip_bad --------------------------------------------------------------------------------
def test_skip_bad_leaves_out_exactly_the_bad_images_and_reports_them(copy):
    def edit(d):
        first_person(d, 370162)["keypoints"] = first_person(d, 370162)["keypoints"][:50]
        d["annotations"].append(dict(first_person(d, 69468), id=5, image_id=999))
    data = break_json(copy, edit)
    (copy / "images" / "000000070133.jpg").unlink()
    (copy / "images" / "000000183872.jpg").write_bytes(b"\x00garbage" * 64)

    index = read_coco_dataset(copy, skip_bad=True)

    assert [r.image_id for r in index.records] == [69468, 489520]
    report = index.report
    assert report.skipped_image_ids == [70133, 183872, 370162]
    bad_ann = first_person(data, 370162)["id"]
    found = sorted((i.image_id or 0, i.annotation_id or 0, i.field or "") for i in report.issues)
    assert found == [
        (0, 5, "image_id"),
        (70133, 0, "file_name"),
        (183872, 0, ""),
        (370162, bad_ann, "keypoints"),
    ]
    # an image with a bad person is left out whole: training on it would teach that the
    # person is background
    assert report.skipped_annotation_ids == sorted(
        [5] + [a["id"] for a in anns_of(data, 183872) + anns_of(data, 370162)])
    assert set(index.coco.getImgIds()) == {69468, 489520}
    assert len(index.coco.getAnnIds()) == 1 + 9
    text = str(report)
    assert text.startswith("skipped 3 image(s) and 16 annotation(s):")  # 1 orphan + 1 + 14
    assert f"annotation {bad_ann} (image 370162): 'keypoints' has 50 numbers" in text
    # the same folder without skip_bad fails and lists every problem
    with pytest.raises(DataError) as e:
        read_coco_dataset(copy)
    assert len(e.value.issues) == 4 and str(e.value).startswith("4 problem(s) in the dataset")


def test_skip_bad_with_nothing_left_is_an_error(copy):
    for path in (copy / "images").iterdir():
        path.write_bytes(b"broken")
    with pytest.raises(DataError) as e:
        read_coco_dataset(copy, skip_bad=True)
    assert str(e.value).startswith(f"{copy / 'annotations.json'}: no usable image left")
    assert len(e.value.issues) == 5


def test_duplicate_ids_are_reported(copy):
    def edit(d):
        first_person(d, 69468)["id"] = first_person(d, 183872)["id"]
        d["images"].append(dict(d["images"][0]))
    break_json(copy, edit)
    index = read_coco_dataset(copy, skip_bad=True)
    assert [r.image_id for r in index.records] == [70133, 370162, 489520]
    assert {(i.image_id, i.field) for i in index.report.issues} == {
        (69468, "id"), (183872, "id")}


# ---- batching --------------------------------------------------------------------------------
def test_collate_pads_and_masks():
    a = torch.rand(3, 4, 6)
    b = torch.rand(3, 5, 2)
    ta, tb = {"image_id": 1}, {"image_id": 2}
    images, mask, targets = collate_batch([(a, ta), (b, tb)])
    assert images.shape == (2, 3, 5, 6) and mask.shape == (2, 5, 6) and mask.dtype == torch.bool
    assert torch.equal(images[0, :, :4, :6], a) and torch.equal(images[1, :, :5, :2], b)
    assert (images[0, :, 4:] == 0).all() and (images[1, :, :, 2:] == 0).all()
    expected = torch.ones(2, 5, 6, dtype=torch.bool)
    expected[0, :4, :6] = False
    expected[1, :5, :2] = False
    assert torch.equal(mask, expected)
    assert targets == [ta, tb]


def test_dataloader_batches_real_images():
    dataset = load_coco_dataset(MINI, transforms=eval_transforms(64, max_size=100))
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, collate_fn=collate_batch)
    images, mask, targets = next(iter(loader))
    sizes = [t["size"].tolist() for t in targets]
    assert images.shape == (5, 3, max(h for h, _ in sizes), max(w for _, w in sizes))
    for i, (h, w) in enumerate(sizes):
        assert min(h, w) <= 64 and max(h, w) <= 100
        assert not mask[i, :h, :w].any() and mask[i].sum() == mask[i].numel() - h * w
    assert [t["image_id"] for t in targets] == [r.image_id for r in dataset.records]


# ---- check-data ------------------------------------------------------------------------------
def test_check_data_command(copy):
    from clickpose.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["check-data", str(MINI)])
    assert result.exit_code == 0, result.output
    assert "24 (15 with keypoints, 9 boxes only)" in result.output
    assert "no problems found" in result.output

    (copy / "images" / "000000070133.jpg").unlink()
    result = runner.invoke(app, ["check-data", str(copy)])
    assert result.exit_code == 1
    assert "image 70133: 'file_name' does not exist" in result.output
    result = runner.invoke(app, ["check-data", str(copy), "--skip-bad"])
    assert result.exit_code == 0
    assert "with --skip-bad, 1 image(s) are left out" in result.output

    write_json(copy, [])
    result = runner.invoke(app, ["check-data", str(copy), "--skip-bad"])
    assert result.exit_code == 1 and "the top level is a JSON array" in result.output


def test_check_data_decode_finds_truncated_images(copy):
    from clickpose.cli.main import app

    path = copy / "images" / "000000489520.jpg"
    path.write_bytes(path.read_bytes()[:4000])
    runner = CliRunner()
    assert runner.invoke(app, ["check-data", str(copy)]).exit_code == 0
    result = runner.invoke(app, ["check-data", str(copy), "--decode"])
    assert result.exit_code == 1
    assert "image 489520: cannot be decoded" in result.output


def test_check_data_skip_bad_does_not_accept_undecodable_images(copy):
    """Training's --skip-bad reads headers only, so it cannot leave such an image out."""
    from clickpose.cli.main import app

    path = copy / "images" / "000000489520.jpg"
    path.write_bytes(path.read_bytes()[:4000])
    result = CliRunner().invoke(app, ["check-data", str(copy), "--decode", "--skip-bad"])
    assert result.exit_code == 1
    assert "1 image(s) cannot be decoded, which --skip-bad does not leave out" in \
        " ".join(result.output.split())


def test_check_data_prints_the_fix_in_square_brackets(copy):
    """Rich markup must not swallow '[x, y, width, height]' from the message."""
    from clickpose.cli.main import app

    break_json(copy, lambda d: first_person(d).update(bbox=[1.0, 2.0]))
    result = CliRunner().invoke(app, ["check-data", str(copy)])
    assert result.exit_code == 1
    assert "give [x, y, width, height] in pixels" in " ".join(result.output.split())


def test_unhashable_category_id_is_an_issue(copy):
    data = break_json(copy, lambda d: first_person(d).update(category_id=[1]))
    with pytest.raises(DataError) as e:
        read_coco_dataset(copy)
    assert str(e.value).startswith(
        f"{copy / 'annotations.json'}: annotation {first_person(data)['id']} (image 183872): "
        "'category_id' is [1], which no entry of 'categories' has")


def test_index_fills_what_cocoeval_reads_and_the_file_may_leave_out(copy):
    """Without 'area' and 'num_keypoints' (and a crowd region without keypoints) the folder
    loads, and its COCO index still evaluates (as validation during training does)."""
    from clickpose.evaluate.ap import evaluate_ap

    def edit(d):
        for a in d["annotations"]:
            a.pop("area")
            a.pop("num_keypoints")
            if a["iscrowd"]:
                a.pop("keypoints")
    data = break_json(copy, edit)
    index = read_coco_dataset(copy)
    persons = [a for a in raw_json()["annotations"] if not a["iscrowd"]]
    perfect = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
                "score": 1.0} for a in persons if a["num_keypoints"] > 0]
    assert evaluate_ap(index.coco.dataset, perfect, index.schema).stats["AP"] == 1.0
    entry = index.coco.anns[first_person(data)["id"]]
    _, _, w, h = first_person(data)["bbox"]
    assert entry["area"] == pytest.approx(w * h)
    assert entry["num_keypoints"] == first_person(raw_json())["num_keypoints"]
    assert index.coco.anns[CROWD_ANN]["keypoints"] == [0] * 51
