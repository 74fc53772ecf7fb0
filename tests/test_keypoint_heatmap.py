"""Keypoint heatmaps: targets where the keypoints are, starts that follow the evidence of the
person's own box, and a loss that rewards the right map."""
import numpy as np
import pytest
import torch

from clickpose.model.heatmap_loss import (
    heatmap_focal_loss,
    heatmap_targets,
    offset_l1_loss,
    offset_targets,
)
from clickpose.model.keypoint_heatmap import cell_centres, heatmap_snap, heatmap_start
from clickpose.model.presets import ModelConfig

PRIOR = ModelConfig().heatmap_prior_sigma  # the start prior every preset uses

SIGMAS = torch.tensor([0.05, 0.05])


def _target(keypoints, weights=None, area=400.0, scale=(160.0, 80.0)):
    """One image's normalized target with persons' (G, K, 2) keypoints."""
    kpts = torch.tensor(keypoints, dtype=torch.float32)
    return {"keypoints": kpts,
            "keypoint_weights": torch.ones(kpts.shape[:2]) if weights is None
            else torch.tensor(weights, dtype=torch.float32),
            "area": torch.full((len(kpts),), area), "scale": torch.tensor(scale),
            "boxes": torch.zeros(len(kpts), 4), "crowd_boxes": torch.zeros(0, 4)}


def test_targets_peak_on_the_keypoint_cell_of_its_own_type():
    mask = torch.zeros(1, 8, 16, dtype=torch.bool)  # 16 x 8 cells over a 160 x 80 image
    # keypoint 0 at pixel (55, 25) -> cell (5, 2); keypoint 1 unlabelled.
    tn = [_target([[[55 / 160, 25 / 80], [0.9, 0.9]]], weights=[[1.0, 0.0]])]
    targets, positive = heatmap_targets(tn, mask, SIGMAS)
    assert positive[0, 0].nonzero().tolist() == [[2, 5]]
    assert not positive[0, 1].any() and targets[0, 1].max() == 0
    assert targets[0, 0, 2, 5] == 1.0
    assert targets[0, 0, 2, 6] < 1.0 and targets[0, 0, 2, 6] > targets[0, 0, 2, 8]


def test_targets_leave_padding_alone_and_use_the_unpadded_extent():
    mask = torch.zeros(1, 8, 16, dtype=torch.bool)
    mask[:, :, 8:] = True  # the right half is padding: the image spans 8 cells across
    tn = [_target([[[0.45, 0.5], [0.45, 0.5]]])]
    _, positive = heatmap_targets(tn, mask, SIGMAS)
    # x = 0.45 of the unpadded width: cell 0.45 * 8 - 0.5 = 3.1 -> cell 3 (not 7 of 16)
    assert positive[0, 0].nonzero()[0, 1].item() == 3
    assert not positive[0, :, :, 8:].any()


def test_a_batch_draws_each_image_as_it_would_alone():
    # Images with other paddings, person counts and areas (one without a person): the batch
    # is drawn in one pass and must give every image its own targets.
    mask = torch.zeros(3, 8, 16, dtype=torch.bool)
    mask[1, :, 10:] = True
    mask[2, 5:] = True
    tn = [_target([[[0.2, 0.3], [0.7, 0.6]], [[0.25, 0.35], [0.1, 0.9]]], area=900.0),
          _target(np.zeros((0, 2, 2))),
          _target([[[0.5, 0.5], [0.95, 0.1]]], weights=[[1.0, 0.0]], area=200.0,
                  scale=(120.0, 60.0))]
    targets, positive = heatmap_targets(tn, mask, SIGMAS)
    for b in range(3):
        alone, alone_positive = heatmap_targets([tn[b]], mask[b:b + 1], SIGMAS)
        assert torch.equal(positive[b:b + 1], alone_positive)
        assert torch.allclose(targets[b:b + 1], alone, atol=1e-6)
    assert not positive[1].any() and positive[0].sum() == 4 and positive[2].sum() == 1


def test_a_batch_of_persons_without_labelled_keypoints_has_no_positives():
    # COCO persons with a box and no keypoint (num_keypoints 0) fill whole batches of
    # real data now and then: no blob to draw, and no error.
    mask = torch.zeros(2, 8, 16, dtype=torch.bool)
    tn = [_target([[[0.2, 0.3], [0.7, 0.6]]], weights=[[0.0, 0.0]]), _target(np.zeros((0, 2, 2)))]
    targets, positive = heatmap_targets(tn, mask, SIGMAS)
    assert not positive.any() and targets.max() == 0
    logits = torch.zeros(2, 2, 8, 16)
    assert torch.isfinite(heatmap_focal_loss(logits, mask, tn, SIGMAS))


def test_loss_is_lower_for_the_map_that_peaks_on_the_keypoint():
    mask = torch.zeros(1, 8, 16, dtype=torch.bool)
    tn = [_target([[[55 / 160, 25 / 80], [135 / 160, 65 / 80]]])]
    targets, _ = heatmap_targets(tn, mask, SIGMAS)
    good = torch.logit(targets.clamp(0.01, 0.99))
    wrong = good.flip(1)  # each type's map shows the other keypoint
    flat = torch.full_like(good, -2.0)
    loss = {name: heatmap_focal_loss(logits, mask, tn, SIGMAS).item()
            for name, logits in [("good", good), ("wrong", wrong), ("flat", flat)]}
    assert loss["good"] < loss["flat"] < loss["wrong"]


def test_crowd_regions_are_not_negatives():
    mask = torch.zeros(1, 8, 16, dtype=torch.bool)
    tn = [_target([[[0.1, 0.1], [0.1, 0.1]]])]
    logits = torch.full((1, 2, 8, 16), -6.0)
    logits[:, :, :, 10:] = 4.0  # confident keypoints on the right: wrong, unless a crowd is there
    plain = heatmap_focal_loss(logits, mask, tn, SIGMAS)
    tn[0]["crowd_boxes"] = torch.tensor([[0.6, 0.0, 1.0, 1.0]])
    assert heatmap_focal_loss(logits, mask, tn, SIGMAS) < plain / 10


def _peak_logits(peaks, shape=(1, 2, 8, 16)):
    logits = torch.full(shape, -8.0)
    for k, (row, col) in peaks:
        logits[0, k, row, col] = 8.0
    return logits


def test_start_follows_the_peak_inside_the_box():
    mask = torch.zeros(1, 8, 16, dtype=torch.bool)
    logits = _peak_logits([(0, (2, 5)), (1, (6, 3))])
    boxes = torch.tensor([[[0.3, 0.5, 0.5, 1.0]]])
    layout = boxes[..., None, :2].expand(1, 1, 2, 2)
    start = heatmap_start(logits, mask, boxes, layout, PRIOR)
    xs, ys = cell_centres(mask)
    assert torch.allclose(start[0, 0, 0], torch.stack([xs[0, 5], ys[0, 2]]), atol=1e-3)
    assert torch.allclose(start[0, 0, 1], torch.stack([xs[0, 3], ys[0, 6]]), atol=1e-3)


def test_start_prefers_its_own_persons_keypoint_over_a_neighbours():
    mask = torch.zeros(1, 8, 16, dtype=torch.bool)
    # Two left-side candidates for keypoint 0: one in each person's box, equally confident.
    logits = _peak_logits([(0, (4, 2)), (0, (4, 13))])
    boxes = torch.tensor([[[0.15, 0.5, 0.3, 1.0], [0.85, 0.5, 0.3, 1.0]]])
    layout = boxes[..., None, :2].expand(1, 2, 2, 2)
    start = heatmap_start(logits, mask, boxes, layout, PRIOR)
    xs, _ = cell_centres(mask)
    assert abs(start[0, 0, 0, 0] - xs[0, 2]) < 0.01
    assert abs(start[0, 1, 0, 0] - xs[0, 13]) < 0.01


def test_start_without_evidence_is_the_layout():
    mask = torch.zeros(1, 8, 16, dtype=torch.bool)
    mask[:, 6:] = True  # padding below: never chosen
    logits = torch.zeros(1, 2, 8, 16)
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2]]])
    layout = torch.tensor([[[[0.45, 0.5], [0.55, 0.52]]]])
    start = heatmap_start(logits, mask, boxes, layout, PRIOR)
    assert torch.allclose(start, layout, atol=0.02)


def test_snap_moves_a_keypoint_to_the_evidence_next_to_it_but_not_far_or_pinned():
    mask = torch.zeros(1, 8, 16, dtype=torch.bool)
    # Keypoint 0's peak is one cell right of the prediction; keypoint 1's is across the image.
    logits = _peak_logits([(0, (4, 6)), (1, (4, 14))])
    xs, ys = cell_centres(mask)
    boxes = torch.tensor([[[0.3, 0.5, 0.3, 1.0], [0.3, 0.5, 0.3, 1.0]]])
    predicted = torch.tensor([[[[xs[0, 5], ys[0, 4]], [xs[0, 3], ys[0, 4]]]]]).expand(1, 2, 2, 2)
    pinned = torch.tensor([[[False, False], [True, False]]])
    snapped = heatmap_snap(logits, mask, boxes, predicted, pinned, prior_sigma=0.08)
    assert torch.allclose(snapped[0, 0, 0], torch.stack([xs[0, 6], ys[0, 4]]), atol=1e-3)
    assert torch.allclose(snapped[0, 0, 1], predicted[0, 0, 1], atol=0.01)  # too far: stays
    assert torch.equal(snapped[0, 1, 0], predicted[0, 1, 0])                # pinned: exact


def _tiny_model_and_state():
    """An untrained `tiny` model (coco17) and its encoder state of a 160 x 128 noise image."""
    from clickpose.keypoints import coco17
    from clickpose.model import build_model, preset_config

    torch.manual_seed(0)
    model = build_model(preset_config("tiny", num_queries=20, max_humans=4), coco17()).eval()
    images, mask = torch.randn(1, 3, 128, 160), torch.zeros(1, 128, 160, dtype=torch.bool)
    with torch.no_grad():
        state = model.encode(images, mask)
    return model, state, images, mask


def test_model_starts_persons_from_its_heatmaps_and_trains_them():
    from clickpose.model.criterion import SetCriterion

    model, state, images, mask = _tiny_model_and_state()
    schema = model.schema
    h, w = state.level_shapes[0]
    assert state.keypoint_heatmap.shape == (1, 17, h, w)
    # A crafted map: the nose of the person in the left half is at cell (3, 4).
    state.keypoint_heatmap = torch.full_like(state.keypoint_heatmap, -8.0)
    state.keypoint_heatmap[0, 0, 3, 4] = 12.0
    boxes = torch.tensor([[[0.25, 0.5, 0.5, 1.0]]])
    start = model.default_keypoints(boxes, state)
    xs, ys = cell_centres(state.finest_mask)
    assert torch.allclose(start[0, 0, 0], torch.stack([xs[0, 4], ys[0, 3]]), atol=1e-3)
    # Without a state (or a heatmap), the start is the learned layout in the box.
    assert torch.allclose(model.default_keypoints(boxes),
                          model.keypoint_decoder.default_keypoints(boxes))
    # The heatmaps reach the criterion: one focal term, weighted.
    with torch.no_grad():
        state = model.encode(images, mask)
        outputs = model.decode_keypoints(state, model.detect_humans(state))
    target = [{"boxes": torch.tensor([[20.0, 10.0, 70.0, 120.0]]),
               "keypoints": torch.cat([torch.rand(1, 17, 2) * torch.tensor([50.0, 110.0])
                                       + torch.tensor([20.0, 10.0]), torch.full((1, 17, 1), 2.0)],
                                      -1),
               "area": torch.tensor([3000.0]), "size": torch.tensor([128, 160])}]
    losses = SetCriterion(schema)(outputs, target)
    assert losses["loss_heatmap"] > 0


def test_recentred_start_lies_on_a_peak_not_between_two():
    model, state, _, _ = _tiny_model_and_state()
    # Two nose candidates in the person's box, four cells apart, the right one stronger:
    # the broad prior's soft-argmax averages them; recentred, the start is by the right one.
    state.keypoint_heatmap = torch.full_like(state.keypoint_heatmap, -8.0)
    state.keypoint_heatmap[0, 0, 6, 6] = 4.0
    state.keypoint_heatmap[0, 0, 6, 10] = 5.0
    boxes = torch.tensor([[[0.5, 0.5, 0.8, 1.0]]])
    xs, ys = cell_centres(state.finest_mask)
    first = model.default_keypoints(boxes, state)[0, 0, 0]
    assert xs[0, 6] + 0.02 < first[0] < xs[0, 10] - 0.02
    model.config = model.config.model_copy(update={"heatmap_recentre": 0.1})
    recentred = model.default_keypoints(boxes, state)[0, 0, 0]
    assert abs(recentred[0] - xs[0, 10]) < 0.5 * abs(first[0] - xs[0, 10])
    assert abs(recentred[0] - xs[0, 10]) < 0.02 and abs(recentred[1] - ys[0, 6]) < 1e-3


def test_prior_sigma_sets_how_far_from_its_usual_place_a_start_may_lie():
    """ModelConfig.heatmap_prior_sigma: a narrower prior around a type's usual place in the
    box weighs a peak far from that place less than a broad one does."""
    model, state, _, _ = _tiny_model_and_state()
    boxes = torch.tensor([[[0.5, 0.5, 0.8, 1.0]]])
    usual = model.keypoint_decoder.default_keypoints(boxes)[0, 0, 0]
    xs, ys = cell_centres(state.finest_mask)
    near_x = int((xs[0] - usual[0]).abs().argmin())
    near_y = int((ys[0] - usual[1]).abs().argmin())
    far_x = near_x + 5 if near_x + 5 < xs.shape[1] else near_x - 5
    state.keypoint_heatmap = torch.full_like(state.keypoint_heatmap, -8.0)
    state.keypoint_heatmap[0, 0, near_y, near_x] = 2.0
    state.keypoint_heatmap[0, 0, near_y, far_x] = 6.0

    def start_x(sigma: float) -> float:
        model.config = model.config.model_copy(update={"heatmap_prior_sigma": sigma})
        return float(model.default_keypoints(boxes, state)[0, 0, 0, 0])

    broad, narrow = start_x(0.35), start_x(0.15)
    assert abs(narrow - xs[0, near_x]) < abs(broad - xs[0, near_x])
    assert abs(start_x(5.0) - xs[0, far_x]) < 0.02  # no prior to speak of: the stronger peak


def _dense_start(logits, mask, boxes, layout_xy, prior_sigma, offsets=None):
    """The definition, materialised: softmax over every cell of (logit + log prior), each
    cell's centre moved by its offset (in cells)."""
    xs, ys = cell_centres(mask)
    sigma = (boxes[..., None, 2:] * prior_sigma).clamp(min=1e-3)
    prior_x = -0.5 * ((xs[:, None, None, :] - layout_xy[..., :1]) / sigma[..., :1]) ** 2
    prior_y = -0.5 * ((ys[:, None, None, :] - layout_xy[..., 1:]) / sigma[..., 1:]) ** 2
    scores = logits.double()[:, None] + prior_y.double()[..., :, None] + prior_x.double()[..., None, :]
    scores = scores.masked_fill(mask[:, None, None], float("-inf"))
    weights = scores.flatten(-2).softmax(-1).view_as(scores)          # (B, N, K, h, w)
    h, w = mask.shape[1:]
    cell_x = xs.double()[:, None, None, None, :].expand(-1, 1, 1, h, w)
    cell_y = ys.double()[:, None, None, :, None].expand(-1, 1, 1, h, w)
    if offsets is not None:
        valid_w = (~mask[:, 0, :]).sum(1).double()[:, None, None, None, None]
        valid_h = (~mask[:, :, 0]).sum(1).double()[:, None, None, None, None]
        cell_x = cell_x + offsets.double()[:, None, :, 0] / valid_w
        cell_y = cell_y + offsets.double()[:, None, :, 1] / valid_h
    x = (weights * cell_x).sum((-2, -1))
    y = (weights * cell_y).sum((-2, -1))
    return torch.stack([x, y], -1).clamp(0.0, 1.0)


def test_factorised_start_equals_the_softmax_over_every_cell():
    generator = torch.Generator().manual_seed(0)
    mask = torch.zeros(2, 12, 20, dtype=torch.bool)
    mask[1, :, 15:] = True          # the second image is padded on the right
    mask[1, 10:] = True
    logits = torch.randn(2, 5, 12, 20, generator=generator) * 4 - 3
    boxes = torch.rand(2, 7, 4, generator=generator) * 0.5 + 0.1
    layout = torch.rand(2, 7, 5, 2, generator=generator)
    for sigma in (0.35, 0.08, 0.01):
        got = heatmap_start(logits, mask, boxes, layout, sigma)
        torch.testing.assert_close(got.double(), _dense_start(logits, mask, boxes, layout, sigma),
                                   atol=2e-5, rtol=0)
    offsets = torch.rand(2, 5, 2, 12, 20, generator=generator) * 2 - 1
    for sigma in (0.35, 0.08):
        got = heatmap_start(logits, mask, boxes, layout, sigma, offsets)
        torch.testing.assert_close(
            got.double(), _dense_start(logits, mask, boxes, layout, sigma, offsets),
            atol=2e-5, rtol=0)
    # Gradients reach the heatmap logits (training starts persons from them).
    logits.requires_grad_(True)
    heatmap_start(logits, mask, boxes, layout, PRIOR).sum().backward()
    assert logits.grad.abs().sum() > 0 and torch.isfinite(logits.grad).all()


def test_heatmaps_on_a_finer_backbone_level():
    """heatmap_fine_level: the heatmaps come out at stride 4 (twice the finest encoder
    level), with their own mask, and a training loss and a prediction read them."""
    from clickpose.keypoints import coco17
    from clickpose.model import build_model, preset_config
    from clickpose.model.criterion import SetCriterion

    torch.manual_seed(0)
    model = build_model(preset_config("tiny", heatmap_fine_level=1), coco17())
    images = torch.randn(2, 3, 128, 160)
    mask = torch.zeros(2, 128, 160, dtype=torch.bool)
    mask[1, :, 96:] = True   # the second image is 96 pixels wide, padded
    state = model.encode(images, mask)
    h, w = state.level_shapes[0]
    assert state.keypoint_heatmap.shape == (2, 17, 2 * h, 2 * w) == (2, 17, 32, 40)
    assert state.heatmap_mask.shape == (2, 32, 40) and state.heatmap_mask[1, :, 24:].all()
    assert not state.heatmap_mask[1, :, :24].any()
    # The cached-features path gives the same heatmaps as the backbone run inside encode.
    again = model.encode(images, mask, features=model.backbone(images, mask))
    torch.testing.assert_close(again.keypoint_heatmap, state.keypoint_heatmap)
    targets = [{"boxes": torch.tensor([[20.0, 10.0, 80.0, 120.0]]),
                "keypoints": torch.cat([torch.rand(1, 17, 2) * torch.tensor([60.0, 110.0])
                                        + torch.tensor([20.0, 10.0]),
                                        torch.full((1, 17, 1), 2.0)], -1),
                "size": torch.tensor([128, 160 - 64 * i]), "image_id": i} for i in range(2)]
    outputs = model(images, mask)
    losses = SetCriterion(model.schema)(outputs, targets)
    sum(losses.values()).backward()
    assert model.keypoint_heatmap.lateral[0].weight.grad.abs().sum() > 0
    model.eval()
    poses = model.predict(np.zeros((100, 120, 3), dtype=np.uint8))
    assert poses.keypoints.shape[1:] == (17, 2)
    # A model without heatmaps cannot take the finer level.
    try:
        preset_config("tiny", heatmap_fine_level=1, keypoint_heatmap=False,
                      heatmap_offsets=False)
    except ValueError as e:
        assert "heatmap_fine_level 1 needs keypoint_heatmap" in str(e)
    else:
        raise AssertionError("heatmap_fine_level without heatmaps was accepted")


def test_offset_targets_point_from_nearby_cells_to_the_nearest_keypoint_of_their_type():
    mask = torch.zeros(1, 8, 16, dtype=torch.bool)  # 16 x 8 cells over a 160 x 80 image
    # Keypoint 0 at pixel (38, 31): cell coordinates (3.3, 2.6), cell centres at integers.
    # A second person's keypoint 0 at (98, 31) -> (9.3, 2.6); keypoint 1 unlabelled.
    tn = [_target([[[38 / 160, 31 / 80], [0.5, 0.5]], [[98 / 160, 31 / 80], [0.5, 0.5]]],
                  weights=[[1.0, 0.0], [1.0, 0.0]])]
    targets, taught = offset_targets(tn, mask, num_k=2)
    torch.testing.assert_close(targets[0, 0, :, 3, 3], torch.tensor([0.3, -0.4]))
    torch.testing.assert_close(targets[0, 0, :, 2, 4], torch.tensor([-0.7, 0.6]))
    torch.testing.assert_close(targets[0, 0, :, 3, 9], torch.tensor([0.3, -0.4]))  # the other
    assert taught[0, 0, 3, 3] and taught[0, 0, 2, 4] and taught[0, 0, 3, 9]
    assert not taught[0, 0, 3, 6]          # 2.7 cells from either keypoint
    assert not taught[0, 1].any()          # unlabelled type: nothing to learn
    # Every taught cell is within the radius, and points at a keypoint.
    cells_y, cells_x = taught[0, 0].nonzero(as_tuple=True)
    ends = torch.stack([cells_x + targets[0, 0, 0, cells_y, cells_x],
                        cells_y + targets[0, 0, 1, cells_y, cells_x]], -1)
    assert all(min((e - torch.tensor(k)).norm() for k in ([3.3, 2.6], [9.3, 2.6])) < 1e-5
               for e in ends)
    # The loss is zero for the right offsets, and padding never teaches.
    assert offset_l1_loss(targets, mask, tn) == 0
    assert offset_l1_loss(torch.zeros_like(targets), mask, tn) > 0
    mask[:, :, 8:] = True
    _, taught = offset_targets(tn, mask, num_k=2)
    assert not taught[0, :, :, 8:].any()


def test_offsets_place_a_keypoint_inside_its_cell():
    mask = torch.zeros(1, 8, 16, dtype=torch.bool)
    logits = _peak_logits([(0, (4, 6)), (1, (2, 3))])
    offsets = torch.zeros(1, 2, 2, 8, 16)
    offsets[0, 0, :, 4, 6] = torch.tensor([0.3, -0.45])
    xs, ys = cell_centres(mask)
    boxes = torch.tensor([[[0.35, 0.5, 0.4, 1.0]]])
    predicted = torch.tensor([[[[xs[0, 6], ys[0, 4]], [xs[0, 3], ys[0, 2]]]]])
    pinned = torch.zeros(1, 1, 2, dtype=torch.bool)
    snapped = heatmap_snap(logits, mask, boxes, predicted, pinned, 0.08, offsets)
    assert torch.allclose(snapped[0, 0, 0], torch.tensor([6.8 / 16, 4.05 / 8]), atol=1e-4)
    assert torch.allclose(snapped[0, 0, 1], predicted[0, 0, 1], atol=1e-4)


def test_model_with_offsets_starts_at_cell_centres_and_learns_them():
    from clickpose.keypoints import coco17
    from clickpose.model import build_model, preset_config
    from clickpose.model.criterion import SetCriterion

    torch.manual_seed(0)
    plain = build_model(preset_config("tiny", num_queries=20, max_humans=4,
                                      heatmap_offsets=False), coco17()).eval()
    model = build_model(preset_config("tiny", num_queries=20, max_humans=4), coco17())
    assert model.config.heatmap_offsets  # the presets carry them
    missing = model.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["keypoint_heatmap.offsets.bias", "keypoint_heatmap.offsets.weight"]
    images, mask = torch.randn(1, 3, 128, 160), torch.zeros(1, 128, 160, dtype=torch.bool)
    model.eval()
    with torch.no_grad():
        same = [m(images, mask)["pred_keypoints"] for m in (plain, model)]
    torch.testing.assert_close(same[0], same[1])  # zero offsets: the plain model's keypoints
    h, w = model.encode(images, mask).level_shapes[0]
    model.train()
    outputs = model(images, mask)
    assert outputs["keypoint_offsets"].shape == (1, 17, 2, h, w)
    target = [{"boxes": torch.tensor([[20.0, 10.0, 70.0, 120.0]]),
               "keypoints": torch.cat([torch.rand(1, 17, 2) * torch.tensor([50.0, 110.0])
                                       + torch.tensor([20.0, 10.0]), torch.full((1, 17, 1), 2.0)],
                                      -1),
               "area": torch.tensor([3000.0]), "size": torch.tensor([128, 160])}]
    losses = SetCriterion(coco17())(outputs, target)
    assert losses["loss_offsets"] > 0
    losses["loss_offsets"].backward()
    assert model.keypoint_heatmap.offsets.weight.grad.abs().sum() > 0


def test_snapping_leaves_a_clicked_persons_pose_to_the_decoder():
    from clickpose.keypoints import coco17
    from clickpose.model import build_model, preset_config

    torch.manual_seed(0)
    model = build_model(preset_config("tiny", num_queries=20, max_humans=4, heatmap_snap=0.08),
                        coco17()).eval()
    with torch.no_grad():  # offsets that move the snapped keypoints off the cell centres
        model.keypoint_heatmap.offsets.bias.normal_(0.0, 0.5)
    images, mask = torch.randn(1, 3, 128, 160), torch.zeros(1, 128, 160, dtype=torch.bool)
    with torch.no_grad():
        state = model.encode(images, mask)
        humans = model.detect_humans(state)
        start = model.default_keypoints(humans.boxes, state)
        pinned = torch.zeros(start.shape[:-1], dtype=torch.bool)
        pinned[0, 0, 5] = True   # one click on person 0's left shoulder
        snapped = model.decode_keypoints(state, humans, start, pinned)["pred_keypoints"]
        model.config = model.config.model_copy(update={"heatmap_snap": None})
        raw = model.decode_keypoints(state, humans, start, pinned)["pred_keypoints"]
    torch.testing.assert_close(snapped[0, 0], raw[0, 0])   # the clicked person: the decoder's
    assert not torch.allclose(snapped[0, 1:], raw[0, 1:])  # the others: drawn to the heatmaps
    assert torch.equal(snapped[0, 0, 5], start[0, 0, 5])    # the click itself, exactly


def test_head_dilations_stack_convolutions_and_keep_old_weights_loading():
    from clickpose.model.keypoint_heatmap import KeypointHeatmapHead

    plain, wide = KeypointHeatmapHead(32, 3), KeypointHeatmapHead(32, 3, dilations=(1, 2, 4))
    convs = [m for m in wide.net[:-1] if isinstance(m, torch.nn.Conv2d)]
    assert [c.dilation for c in convs] == [(1, 1), (2, 2), (4, 4)]  # each cell sees 15 x 15
    tokens = torch.randn(2, 32, 24, 20)
    assert wide(tokens)[0].shape == plain(tokens)[0].shape == (2, 3, 24, 20)
    # The default head's weights keep their names: checkpoints saved before still load.
    assert list(plain.state_dict()) == ["net.0.weight", "net.0.bias", "net.1.weight",
                                        "net.1.bias", "net.3.weight", "net.3.bias"]
    with pytest.raises(ValueError, match="heatmap_head_dilations"):
        ModelConfig(heatmap_head_dilations=[0])
