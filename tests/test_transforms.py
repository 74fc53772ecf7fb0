"""Transforms keep boxes and keypoints with the pixels (continuous coordinates, x' = W - x)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clickpose.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ColorJitter,
    Compose,
    Normalize,
    RandomHorizontalFlip,
    RandomSizeCrop,
    ToTensor,
    crop,
    eval_transforms,
    hflip,
    resize,
    shorter_side_size,
    train_transforms,
)
from clickpose.keypoints import coco17, coco17_plus

W, H = 100, 60


def make_image(width: int = W, height: int = H) -> Image.Image:
    """A picture whose every pixel differs from its mirror image."""
    xs = np.arange(width)[None, :].repeat(height, 0)
    ys = np.arange(height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([xs * 2, ys * 3, xs + ys], axis=-1).astype(np.uint8))


def make_target(k: int = 17) -> dict:
    """Two persons: one labelled on nose, both eyes, left wrist; one with no keypoints."""
    kps = torch.zeros(2, k, 3)
    kps[0, 0] = torch.tensor([50.0, 20.0, 2])  # nose
    kps[0, 1] = torch.tensor([55.5, 15.0, 2])  # left_eye
    kps[0, 2] = torch.tensor([44.0, 15.25, 1])  # right_eye
    kps[0, 9] = torch.tensor([70.0, 40.0, 2])  # left_wrist
    return {
        "boxes": torch.tensor([[30.0, 10.0, 80.0, 58.0], [0.0, 5.0, 12.5, 30.0]]),
        "keypoints": kps,
        "area": torch.tensor([1500.0, 200.0]),
        "annotation_ids": torch.tensor([11, 12]),
        "crowd_boxes": torch.tensor([[60.0, 0.0, 100.0, 20.0]]),
        "image_id": 7,
        "orig_size": torch.tensor([H, W]),
        "size": torch.tensor([H, W]),
    }


def assert_targets_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if torch.is_tensor(value):
            assert torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


# ---- flip ------------------------------------------------------------------------------------
def test_flip_mirrors_x_and_swaps_left_right():
    schema = coco17()
    image, target = make_image(), make_target()
    out_image, out = hflip(image, target, schema.flip_permutation)

    assert np.array_equal(np.asarray(out_image), np.asarray(image)[:, ::-1])
    kps = target["keypoints"]
    # the nose stays the nose, mirrored
    assert out["keypoints"][0, 0].tolist() == [W - 50.0, 20.0, 2]
    # the left eye's mirror image is the new right eye, and the other way round
    assert out["keypoints"][0, 2].tolist() == [W - 55.5, 15.0, 2]
    assert out["keypoints"][0, 1].tolist() == [W - 44.0, 15.25, 1]
    # left wrist (9) -> right wrist (10)
    assert out["keypoints"][0, 10].tolist() == [W - 70.0, 40.0, 2]
    assert out["keypoints"][0, 9].tolist() == [0.0, 0.0, 0.0]
    # unlabelled keypoints stay (0, 0, 0), not (W, 0, 0)
    assert (out["keypoints"][1] == 0).all()
    assert out["boxes"].tolist() == [[W - 80.0, 10.0, W - 30.0, 58.0],
                                     [W - 12.5, 5.0, W - 0.0, 30.0]]
    assert out["crowd_boxes"].tolist() == [[0.0, 0.0, 40.0, 20.0]]
    assert torch.equal(out["area"], target["area"]) and torch.equal(out["size"], target["size"])
    assert torch.equal(target["keypoints"], kps)  # the input is left alone


def test_flip_twice_is_identity():
    perm = coco17().flip_permutation
    image, target = make_image(), make_target()
    image2, target2 = hflip(*hflip(image, target, perm), perm)
    assert np.array_equal(np.asarray(image2), np.asarray(image))
    assert_targets_equal(target2, target)


def test_flip_swaps_extra_keypoints_of_a_grown_schema():
    schema = coco17_plus(["head_top", "left_hand_tip", "right_hand_tip"])
    target = make_target(k=schema.num_keypoints)
    target["keypoints"][0, schema.index("left_hand_tip")] = torch.tensor([90.0, 50.0, 2])
    target["keypoints"][0, schema.index("head_top")] = torch.tensor([50.0, 2.0, 2])
    _, out = hflip(make_image(), target, schema.flip_permutation)
    assert out["keypoints"][0, schema.index("right_hand_tip")].tolist() == [10.0, 50.0, 2]
    assert out["keypoints"][0, schema.index("left_hand_tip")].tolist() == [0.0, 0.0, 0.0]
    assert out["keypoints"][0, schema.index("head_top")].tolist() == [50.0, 2.0, 2]


def test_random_flip_follows_p_and_generator():
    flip = RandomHorizontalFlip(coco17().flip_permutation, p=1.0)
    _, out = flip(make_image(), make_target(), torch.Generator().manual_seed(0))
    assert out["boxes"][0, 0] == W - 80.0
    keep = RandomHorizontalFlip(coco17().flip_permutation, p=0.0)
    _, out = keep(make_image(), make_target(), torch.Generator().manual_seed(0))
    assert_targets_equal(out, make_target())


# ---- resize ----------------------------------------------------------------------------------
def test_resize_scales_coordinates_exactly():
    image, target = make_image(), make_target()
    out_image, out = resize(image, target, (45, 160))  # sy = 0.75, sx = 1.6
    sx, sy = 160 / W, 45 / H
    assert out_image.size == (160, 45)
    assert torch.allclose(out["boxes"], target["boxes"] * torch.tensor([sx, sy, sx, sy]))
    assert torch.allclose(out["crowd_boxes"], torch.tensor([[60 * sx, 0.0, 100 * sx, 20 * sy]]))
    nose = out["keypoints"][0, 0]
    assert nose.tolist() == pytest.approx([50.0 * sx, 20.0 * sy, 2])
    assert out["keypoints"][0, 2].tolist() == pytest.approx([44.0 * sx, 15.25 * sy, 1])
    assert (out["keypoints"][1] == 0).all()  # unlabelled stay (0, 0, 0)
    assert torch.allclose(out["area"], target["area"] * sx * sy)
    assert out["size"].tolist() == [45, 160] and out["orig_size"].tolist() == [H, W]
    # the far corner maps to the far corner: continuous coordinates
    _, corner = resize(image, dict(target, boxes=torch.tensor([[0.0, 0.0, W, H]])), (45, 160))
    assert corner["boxes"].tolist() == [[0.0, 0.0, 160.0, 45.0]]


@pytest.mark.parametrize("width, height, size, max_size, expected", [
    (640, 427, 320, None, (320, 480)),     # landscape: height is the shorter side
    (427, 640, 320, None, (480, 320)),     # portrait
    (640, 427, 320, 400, (266, 399)),      # capped: floor(400 * 427 / 640) = 266, 398.7 wide
    (500, 500, 256, 1333, (256, 256)),
])
def test_shorter_side_size(width, height, size, max_size, expected):
    assert shorter_side_size(width, height, size, max_size) == expected


def test_shorter_side_size_never_exceeds_max_size():
    for width in range(17, 700, 23):
        for height in range(13, 700, 29):
            for size, max_size in [(256, 320), (800, 1333), (64, 100)]:
                h, w = shorter_side_size(width, height, size, max_size)
                assert max(h, w) <= max_size and min(h, w) <= size
                # the aspect ratio survives up to rounding
                assert abs(w / h - width / height) <= (width / height) * 2.0 / min(h, w)


def test_eval_transforms_resize_and_normalise_deterministically():
    image, target = make_image(), make_target()
    t = eval_transforms(30, max_size=1000)
    tensor, out = t(image, target)
    tensor2, out2 = t(image, target)
    assert tensor.shape == (3, 30, 50)
    assert torch.equal(tensor, tensor2)
    assert_targets_equal(out, out2)
    assert torch.allclose(out["boxes"], target["boxes"] * 0.5)
    expected = (np.asarray(image.resize((50, 30), Image.Resampling.BILINEAR)) / 255.0
                - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.allclose(tensor.permute(1, 2, 0).numpy(), expected, atol=1e-5)


# ---- crop ------------------------------------------------------------------------------------
def test_crop_drops_outside_keypoints_clips_boxes_and_drops_empty_persons():
    image, target = make_image(), make_target()
    top, left, h, w = 12, 20, 40, 40  # x in [20, 60], y in [12, 52]
    out_image, out = crop(image, target, (top, left, h, w))

    assert np.array_equal(np.asarray(out_image), np.asarray(image)[12:52, 20:60])
    # person 2 (x <= 12.5) is outside: dropped with its id
    assert out["annotation_ids"].tolist() == [11]
    assert out["boxes"].tolist() == [[10.0, 0.0, 40.0, 40.0]]
    kps = out["keypoints"][0]
    assert kps[0].tolist() == [30.0, 8.0, 2]  # nose (50, 20) inside
    assert kps[1].tolist() == [35.5, 3.0, 2]  # left eye (55.5, 15) inside
    assert kps[2].tolist() == [24.0, 3.25, 1]  # right eye inside
    assert kps[9].tolist() == [0.0, 0.0, 0.0]  # left wrist (70, 40) is right of x = 60
    # area keeps the share of the box still in view: 30 x 40 of 50 x 48
    assert out["area"].tolist() == pytest.approx([1500.0 * (30 * 40) / (50 * 48)])
    assert out["crowd_boxes"].shape == (0, 4)  # it only touches the crop's right edge
    assert out["size"].tolist() == [40, 40] and out["orig_size"].tolist() == [H, W]


def test_crop_clips_crowd_boxes_and_drops_those_out_of_view():
    image, target = make_image(), make_target()
    _, out = crop(image, target, (0, 50, 30, 30))  # x in [50, 80], y in [0, 30]
    assert out["crowd_boxes"].tolist() == [[10.0, 0.0, 30.0, 20.0]]
    _, out = crop(image, target, (30, 0, 30, 50))  # y in [30, 60]: the crowd region is above
    assert out["crowd_boxes"].shape == (0, 4)


def test_random_size_crop_is_reproducible_and_consistent():
    cropper = RandomSizeCrop(20, 50)
    image, target = make_image(), make_target()
    a_image, a = cropper(image, target, torch.Generator().manual_seed(3))
    b_image, b = cropper(image, target, torch.Generator().manual_seed(3))
    assert np.array_equal(np.asarray(a_image), np.asarray(b_image))
    assert_targets_equal(a, b)
    assert a["size"].tolist() == [a_image.height, a_image.width]
    assert 20 <= a_image.width <= 50 and 20 <= a_image.height <= 50


# ---- colour, tensor --------------------------------------------------------------------------
def test_color_jitter_changes_pixels_not_target_and_is_seeded():
    jitter = ColorJitter(0.4, 0.4, 0.4, 0.1)
    image, target = make_image(), make_target()
    a, ta = jitter(image, target, torch.Generator().manual_seed(1))
    b, _ = jitter(image, target, torch.Generator().manual_seed(1))
    c, _ = jitter(image, target, torch.Generator().manual_seed(2))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(image))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert_targets_equal(ta, target)


def test_normalize_mean_std_configurable():
    image = Image.new("RGB", (4, 3), (255, 0, 128))
    tensor, _ = Compose([ToTensor(), Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))])(
        image, make_target())
    assert tensor.shape == (3, 3, 4)
    assert tensor[:, 0, 0].tolist() == pytest.approx([1.0, -2.0, 128 / 255 - 0.5], abs=1e-6)


# ---- the training pipeline -------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(12))
def test_train_transforms_keep_labels_in_the_image(seed):
    schema = coco17()
    t = train_transforms(schema, sizes=[48, 56, 64], max_size=96)
    image, target = make_image(), make_target()
    tensor, out = t(image, target, torch.Generator().manual_seed(seed))
    h, w = out["size"].tolist()
    assert tensor.shape == (3, h, w) and min(h, w) <= 64 and max(h, w) <= 96
    labelled = out["keypoints"][..., 2] > 0
    xs, ys = out["keypoints"][..., 0][labelled], out["keypoints"][..., 1][labelled]
    assert ((xs >= 0) & (xs <= w) & (ys >= 0) & (ys <= h)).all()
    assert (out["keypoints"][~labelled] == 0).all()
    boxes = out["boxes"]
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
    assert (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all() and (boxes >= 0).all()
    assert len(out["annotation_ids"]) == len(boxes) == len(out["area"]) == len(out["keypoints"])
    # same seed, same result; a numpy Generator is accepted as well
    tensor2, out2 = t(image, target, torch.Generator().manual_seed(seed))
    assert torch.equal(tensor, tensor2)
    assert_targets_equal(out, out2)
    t(image, target, np.random.default_rng(seed))


def test_train_transforms_label_count_is_preserved_without_crop():
    """Without the crop stage no keypoint can leave the image: flips and resizes keep all."""
    t = train_transforms(coco17(), sizes=[40, 80], max_size=200, crop=False)
    for seed in range(6):
        _, out = t(make_image(), make_target(), torch.Generator().manual_seed(seed))
        assert int((out["keypoints"][..., 2] > 0).sum()) == 4
        assert out["annotation_ids"].tolist() == [11, 12]
