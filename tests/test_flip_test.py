"""Test-time flip: each pose averaged with the one decoded on the mirrored image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from annotator_fixtures import make_checkpoint, tiny_model
from session_fixtures import structured_image

from clickpose.model.clickpose_model import mirror_within_valid
from clickpose.model.human_decoder import HumanState
from clickpose.model.inference import EvalTransform
from clickpose.train.predict import predict_folder

COCO_MINI = Path(__file__).resolve().parent / "data" / "coco-mini"


def test_mirror_keeps_padding_in_place():
    images = torch.arange(2 * 3 * 2 * 5, dtype=torch.float32).view(2, 3, 2, 5)
    mask = torch.zeros(2, 2, 5, dtype=torch.bool)
    mask[1, :, 3:] = True  # the second image is 3 pixels wide, padded on the right
    mirrored = mirror_within_valid(images, mask)
    assert torch.equal(mirrored[0], images[0].flip(-1))
    assert torch.equal(mirrored[1, ..., :3], images[1, ..., :3].flip(-1))
    assert torch.equal(mirrored[1, ..., 3:], images[1, ..., 3:])
    assert torch.equal(mirror_within_valid(mirrored, mask), images)


def test_flip_test_averages_the_keypoints_only():
    model = tiny_model()
    images, mask, _ = EvalTransform.from_config(model.config)(structured_image(), "cpu")
    with torch.no_grad():
        plain = model(images, mask)
        model.config = model.config.model_copy(update={"flip_test": True})
        flipped = model(images, mask)
    for key in ("pred_logits", "pred_boxes", "pred_scores", "pred_visibility"):
        assert torch.equal(plain[key], flipped[key]), key
    moved = (plain["pred_keypoints"] - flipped["pred_keypoints"]).abs()
    assert moved.max() > 1e-4 and bool(torch.isfinite(flipped["pred_keypoints"]).all())
    # The mean of the plain pose and the pose the decoder gives each person on the mirrored
    # image (box mirrored, started from its mirrored pose), mirrored back, left and right
    # exchanged.
    permutation = model.schema.flip_permutation

    def mirror(keypoints):
        keypoints = keypoints[:, :, permutation].clone()
        keypoints[..., 0] = 1.0 - keypoints[..., 0]
        return keypoints

    with torch.no_grad():
        humans = model.detect_humans(model.encode(images, mask))
        boxes = humans.boxes.clone()
        boxes[..., 0] = 1.0 - boxes[..., 0]
        other = model.decode_keypoints(model.encode(mirror_within_valid(images, mask), mask),
                                       HumanState(humans.content, boxes, humans.logits),
                                       init_keypoints=mirror(plain["pred_keypoints"]))
    torch.testing.assert_close(flipped["pred_keypoints"],
                               (plain["pred_keypoints"] + mirror(other["pred_keypoints"])) / 2)


def test_predict_folder_with_flip_test(tmp_path):
    _, checkpoint = make_checkpoint(tmp_path / "ckpt")
    plain = predict_folder(checkpoint, COCO_MINI, progress=False)
    flipped = predict_folder(checkpoint, COCO_MINI, tmp_path / "preds.json", progress=False,
                             flip_test=True)
    assert [(r["image_id"], r["score"]) for r in plain] == \
        [(r["image_id"], r["score"]) for r in flipped]
    assert not np.allclose([r["keypoints"] for r in plain], [r["keypoints"] for r in flipped])
    assert (tmp_path / "preds.json").is_file()
