"""Keypoint position values (ModelConfig.keypoint_position_values): keypoint tokens read
each other's positions and each xy head its own; the paths start at zero."""
from __future__ import annotations

import torch
from test_model_shapes import as_if_trained, padded_batch

from clickpose.keypoints import coco17
from clickpose.model import build_model, preset_config


def _models():
    torch.manual_seed(0)
    plain = as_if_trained(build_model(preset_config("tiny"), coco17())).eval()
    torch.manual_seed(0)
    with_positions = build_model(preset_config("tiny", keypoint_position_values=True), coco17())
    missing, unexpected = with_positions.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected
    assert missing and all("position" in name for name in missing)
    return plain, with_positions.eval()


def _decode(model, pinned_xy=None):
    images, mask = padded_batch()
    with torch.no_grad():
        state = model.encode(images, mask)
        humans = model.detect_humans(state)
        start = model.default_keypoints(humans.boxes, state)
        pinned = torch.zeros(start.shape[:3], dtype=torch.bool)
        if pinned_xy is not None:
            start = start.clone()
            start[:, 0, 9] = torch.tensor(pinned_xy)
            pinned[:, 0, 9] = True
        return model.decode_keypoints(state, humans, start, pinned)


def test_a_model_without_the_paths_starts_from_the_same_function():
    plain, with_positions = _models()
    a, b = _decode(plain, (0.3, 0.6)), _decode(with_positions, (0.3, 0.6))
    for key in ("pred_keypoints", "pred_visibility", "pred_boxes"):
        assert torch.equal(a[key], b[key])


def test_trained_paths_carry_a_pinned_keypoints_position_to_the_others():
    _, model = _models()
    with torch.no_grad():
        for name, p in model.keypoint_decoder.named_parameters():
            if "position" in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    here, there = _decode(model, (0.3, 0.6)), _decode(model, (0.7, 0.2))
    others = [k for k in range(17) if k != 9]
    moved = (here["pred_keypoints"][:, 0, others] - there["pred_keypoints"][:, 0, others]).abs()
    assert float(moved.max()) > 1e-4
    assert torch.equal(here["pred_keypoints"][:, 0, 9], torch.tensor([[0.3, 0.6]] * 2))


def test_the_loss_reaches_every_position_path():
    _, model = _models()
    model.train()
    images, mask = padded_batch()
    state = model.encode(images, mask)
    humans = model.detect_humans(state)
    out = model.decode_keypoints(state, humans)
    # Every layer's keypoints are supervised (the auxiliary losses); a layer's xy path
    # reaches only its own output, as the next layer starts from detached keypoints.
    layers = [out, *out["aux_outputs"]]
    sum(layer["pred_keypoints"].sum() for layer in layers).backward()
    paths = [p for name, p in model.keypoint_decoder.named_parameters() if "position" in name]
    assert len(paths) == 4 * len(model.keypoint_decoder.layers)  # weight + bias, two paths
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in paths)
