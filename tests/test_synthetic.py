"""Synthetic people: determinism, COCO validity, visibility from the drawing, left/right."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

from clickpose.data.synthetic import (
    compose_scene,
    generate_dataset,
    image_rng,
    persons_to_poses,
    render_scene,
)
from clickpose.data.synthetic.render import KEYPOINT_PARTS, PART_IDS
from clickpose.data.synthetic.scene import PersonSpec
from clickpose.data.synthetic.skeleton import Body, Pose, sample_pose
from clickpose.data.synthetic.styles import sample_look
from clickpose.keypoints import EXTRA_KEYPOINTS, KeypointSchema, coco17, coco17_plus

COCO17 = coco17()


def _folder_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("photo") / "ds", 12, seed=11,
                            style="photo", progress=False)


# ---- determinism ---------------------------------------------------------------------------
def test_same_arguments_give_identical_bytes_and_image_i_does_not_depend_on_n(tmp_path):
    a = _folder_bytes(generate_dataset(tmp_path / "a", 3, seed=5, progress=False))
    b = _folder_bytes(generate_dataset(tmp_path / "b", 3, seed=5, progress=False))
    assert a == b
    assert len(a) == 4                                   # annotations.json + 3 images
    c_dir = generate_dataset(tmp_path / "c", 5, seed=5, progress=False)
    c = _folder_bytes(c_dir)
    for name in ("images/000001.jpg", "images/000002.jpg", "images/000003.jpg"):
        assert c[name] == a[name]
    ann_a, ann_c = json.loads(a["annotations.json"]), json.loads(c["annotations.json"])
    assert [x for x in ann_c["annotations"] if x["image_id"] <= 3] == ann_a["annotations"]
    other = _folder_bytes(generate_dataset(tmp_path / "d", 3, seed=6, progress=False))
    assert other["images/000001.jpg"] != a["images/000001.jpg"]
    assert "date" not in a["annotations.json"].decode()  # no time stamps


def test_existing_folder_is_refused_unless_overwrite(tmp_path):
    out = generate_dataset(tmp_path / "ds", 1, seed=0, progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_dataset(out, 2, seed=0, progress=False)
    generate_dataset(out, 2, seed=0, progress=False, overwrite=True)
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_an_overwrite_that_fails_at_the_swap_keeps_the_old_folder(tmp_path, monkeypatch):
    from pathlib import Path

    out = generate_dataset(tmp_path / "ds", 1, seed=0, progress=False)
    before = (out / "annotations.json").read_bytes()
    rename = Path.rename

    def failing_swap(self, target):  # the new folder cannot take the old one's place
        if Path(target) == out and not self.name.endswith(".replaced"):
            raise OSError("disk full")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_swap)
    with pytest.raises(OSError, match="disk full"):
        generate_dataset(out, 2, seed=0, progress=False, overwrite=True)
    monkeypatch.undo()
    assert (out / "annotations.json").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing aside


# ---- COCO validity -------------------------------------------------------------------------
def test_pycocotools_reads_the_dataset_and_fields_are_consistent(photo_set):
    coco = COCO(str(photo_set / "annotations.json"))
    data = json.loads((photo_set / "annotations.json").read_text())
    assert data["info"]["seed"] == 11 and data["info"]["style"] == "photo"
    schema = KeypointSchema.from_coco_category(data["categories"][0])
    assert schema == COCO17
    assert coco.getCatIds() == [1]
    k = schema.num_keypoints
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) >= 12
    for img in coco.loadImgs(coco.getImgIds()):
        with Image.open(photo_set / "images" / img["file_name"]) as im:
            assert im.size == (img["width"], img["height"]) == (256, 256)
        assert 1 <= len(coco.getAnnIds(imgIds=img["id"])) <= 4
    for ann in anns:
        kp = np.asarray(ann["keypoints"], float).reshape(-1, 3)
        assert len(ann["keypoints"]) == 3 * k
        assert ann["num_keypoints"] == int((kp[:, 2] > 0).sum())
        assert ann["iscrowd"] == 0 and ann["category_id"] == 1
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 256 and y + h <= 256 and w > 0 and h > 0
        assert 0 < ann["area"] <= w * h
        labelled = kp[:, 2] > 0
        assert np.all(kp[~labelled, :2] == 0)           # COCO: v=0 -> x = y = 0
        inside = ((kp[:, 0] >= x) & (kp[:, 0] < x + w) & (kp[:, 1] >= y) & (kp[:, 1] < y + h))
        assert np.all(inside[labelled]), ann["id"]


def test_extra_keypoints_carry_their_sigmas_and_sit_where_the_geometry_says(tmp_path):
    extra = ("head_top", "left_hand_tip", "right_hand_tip", "left_toe", "right_toe")
    out = generate_dataset(tmp_path / "x", 8, seed=2, extra_keypoints=extra, progress=False)
    data = json.loads((out / "annotations.json").read_text())
    cat = data["categories"][0]
    assert cat["keypoints"][17:] == list(extra)
    assert cat["sigmas"][17:] == [EXTRA_KEYPOINTS[n][0] for n in extra]
    schema = KeypointSchema.from_coco_category(cat)
    assert schema == coco17_plus(list(extra))
    idx = {n: i for i, n in enumerate(cat["keypoints"])}
    checked, toes_checked = 0, 0
    for ann in data["annotations"]:
        kp = np.asarray(ann["keypoints"], float).reshape(-1, 3)
        assert kp.shape == (22, 3)
        both = kp[idx["head_top"], 2] > 0 and kp[idx["nose"], 2] > 0
        if both and ann["pose"] in ("standing", "walking", "arms_raised"):
            assert kp[idx["head_top"], 1] < kp[idx["nose"], 1]    # crown above the nose
            checked += 1
        for side in ("left", "right"):   # the toe is a foot length from the ankle, no more
            toe, ankle = kp[idx[f"{side}_toe"]], kp[idx[f"{side}_ankle"]]
            if toe[2] > 0 and ankle[2] > 0:
                assert 0 < np.hypot(*(toe[:2] - ankle[:2])) < 0.25 * max(ann["bbox"][2:])
                toes_checked += 1
    assert checked > 3 and toes_checked > 3


# ---- visibility is what the drawing shows --------------------------------------------------
def test_visibility_follows_the_drawn_masks():
    schema = coco17_plus(["head_top", "left_toe"])
    allowed = [{PART_IDS[p] for p in KEYPOINT_PARTS[n]} for n in schema.keypoints]
    seen = {"visible": 0, "behind_other": 0, "self": 0, "outside": 0}
    for i in range(30):
        image, persons = render_scene(image_rng(3, i), schema, "photo", 192, 4)
        assert image.size == (192, 192) and 1 <= len(persons) <= 4
        for n, p in enumerate(persons):
            assert p.area == int(p.mask.sum()) > 0
            assert not np.any(p.mask & ~p.silhouette)
            ys, xs = np.nonzero(p.silhouette)
            assert p.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            for k, (x, y, v) in enumerate(p.keypoints):
                if v == 0:
                    assert x == y == 0
                    seen["outside"] += 1
                    continue
                px, py = int(np.floor(x)), int(np.floor(y))
                assert p.silhouette[py, px]      # every labelled point is on the person
                if v == 2:
                    assert p.mask[py, px] and p.parts[py, px] in allowed[k]
                    seen["visible"] += 1
                elif not p.mask[py, px]:         # another person is on top here
                    assert any(o.mask[py, px] for m, o in enumerate(persons) if m != n)
                    seen["behind_other"] += 1
                else:                            # own nearer part on top
                    assert p.parts[py, px] not in allowed[k]
                    seen["self"] += 1
    assert all(count > 10 for count in seen.values()), seen


def _single(yaw: float, pose: str = "standing", style: str = "photo"):
    """One upright person of average proportions, head straight, in a 200 px image."""
    rng = np.random.default_rng(0)
    p = sample_pose(rng, pose)
    pose_ = Pose(name=p.name, shoulder_flex=p.shoulder_flex, shoulder_abd=(15.0, 15.0),
                 elbow_flex=p.elbow_flex, hip_flex=p.hip_flex, hip_abd=p.hip_abd,
                 knee_flex=p.knee_flex, foot_out=p.foot_out)
    spec = PersonSpec(Body(), pose_, yaw, 170.0, (100.0, 190.0), sample_look(rng, style, 170))
    _, persons = compose_scene([spec], COCO17, Image.new("RGB", (200, 200), (128, 128, 128)))
    (person,) = persons
    names = COCO17.keypoints
    return {n: person.keypoints[i] for i, n in enumerate(names)}


@pytest.mark.parametrize("style", ["photo", "art"])
def test_left_and_right_belong_to_the_person(style):
    front, back = _single(0.0, style=style), _single(180.0, style=style)
    for part in ("shoulder", "hip", "eye", "ear", "wrist", "ankle"):
        # facing the camera: the person's left is on the image right
        assert front[f"left_{part}"][0] > front[f"right_{part}"][0], part
        # seen from the back: on the image left
        assert back[f"left_{part}"][0] < back[f"right_{part}"][0], part
    assert all(front[n][2] == 2 for n in ("nose", "left_eye", "right_eye", "left_ear",
                                          "right_ear", "left_shoulder", "right_shoulder"))
    assert back["nose"][2] == back["left_eye"][2] == back["right_eye"][2] == 1
    assert back["left_ear"][2] == back["right_ear"][2] == 2


@pytest.mark.parametrize("yaw, near, far", [(90.0, "right", "left"), (-90.0, "left", "right")])
def test_side_view_hides_the_far_side(yaw, near, far):
    kp = _single(yaw, "standing")
    for part in ("ear", "eye", "shoulder", "hip"):
        assert kp[f"{near}_{part}"][2] == 2, part
        assert kp[f"{far}_{part}"][2] == 1, part
    assert kp["nose"][2] == 2


def test_left_right_holds_in_random_scenes(photo_set):
    data = json.loads((photo_set / "annotations.json").read_text())
    ls, rs = COCO17.index("left_shoulder"), COCO17.index("right_shoulder")
    counted = 0
    for ann in data["annotations"]:
        kp = np.asarray(ann["keypoints"], float).reshape(-1, 3)
        if kp[ls, 2] == 0 or kp[rs, 2] == 0:
            continue
        yaw = (ann["yaw"] + 180) % 360 - 180
        if abs(yaw) < 30:
            assert kp[ls, 0] > kp[rs, 0]
            counted += 1
        elif abs(yaw) > 150:
            assert kp[ls, 0] < kp[rs, 0]
            counted += 1
    assert counted >= 5


def test_drawn_persons_become_ground_truth_poses():
    _, persons = render_scene(image_rng(8, 1), COCO17, "art", 128, 3)
    poses = persons_to_poses(persons, 17)
    assert poses.num_persons == len(persons) >= 1
    np.testing.assert_array_equal(poses.visibility, [p.keypoints[:, 2] for p in persons])
    np.testing.assert_array_equal(poses.keypoints, [p.keypoints[:, :2] for p in persons])
    x, y, w, h = persons[0].bbox
    assert poses.boxes[0].tolist() == [x, y, x + w, y + h]
    assert persons_to_poses([], 17).num_persons == 0


# ---- styles --------------------------------------------------------------------------------
def test_photo_and_art_styles_look_different():
    stats = {}
    for style in ("photo", "art"):
        colours, dark = [], []
        for i in range(6):
            image, _ = render_scene(image_rng(9, i), COCO17, style, 128, 3)
            px = np.asarray(image).reshape(-1, 3)
            colours.append(len(np.unique(px, axis=0)))
            dark.append(float((px.max(axis=1) < 30).mean()))
        stats[style] = (np.mean(colours), np.mean(dark))
    assert stats["photo"][0] > 20 * stats["art"][0]   # noise and shading vs flat fills
    assert stats["art"][1] > 5 * stats["photo"][1] + 0.005   # thick black outlines


def test_unknown_style_and_keypoint_are_refused():
    with pytest.raises(ValueError, match="unknown style 'oil'"):
        render_scene(image_rng(0, 0), COCO17, "oil", 64, 1)
    schema = COCO17.extend(["tail"], name="animal")
    with pytest.raises(ValueError, match="tail"):
        render_scene(image_rng(0, 0), schema, "photo", 64, 1)


# ---- CLI -----------------------------------------------------------------------------------
def test_cli_synth_writes_a_dataset(tmp_path):
    from clickpose.cli.main import app

    out = tmp_path / "cli"
    args = ["synth", "--out", str(out), "--images", "3", "--seed", "4", "--style", "art",
            "--extra-keypoints", "head_top,left_toe", "--extra-keypoints", "right_toe",
            "--max-persons", "2", "--size", "96"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "annotations.json").read_text())
    assert data["info"]["style"] == "art" and data["info"]["size"] == 96
    assert data["categories"][0]["keypoints"][17:] == ["head_top", "left_toe", "right_toe"]
    assert len(data["images"]) == 3
    per_image = np.bincount([a["image_id"] for a in data["annotations"]])
    assert per_image.max() <= 2
    with Image.open(out / "images" / data["images"][0]["file_name"]) as im:
        assert im.size == (96, 96)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "--overwrite" in again.output
    bad = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "b"), "--images", "1",
                                   "--extra-keypoints", "tail"])
    assert bad.exit_code == 1 and "tail" in bad.output
