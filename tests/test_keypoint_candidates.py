"""Keypoint candidates: each type's strongest heatmap peaks inside a person's box, and a
decoder whose pointer can move a keypoint onto one of them."""
import pytest
import torch

from clickpose.keypoints import coco17
from clickpose.model import build_model, preset_config
from clickpose.model.keypoint_candidates import ABSENT_LOGIT, keypoint_candidates

BOX = torch.tensor([[[0.45, 0.45, 0.6, 0.6]]])  # cxcywh: cells 1..6 of 8, with the margin


def _heatmap(peaks: dict[tuple[int, int], float], types: int = 1) -> torch.Tensor:
    """(1, types, 8, 8) logits, low everywhere but a gentle slope, with peaks at (row, col)."""
    logits = -6.0 + 0.01 * torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8)
    logits = logits.repeat(1, types, 1, 1)
    for (row, col), value in peaks.items():
        logits[0, 0, row, col] = value
    return logits


def test_strongest_peaks_inside_the_box_come_first():
    # (7, 0) is the strongest peak of the map but lies outside the person's box.
    logits = _heatmap({(2, 2): 3.0, (5, 5): 1.0, (7, 0): 4.0})
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    positions, values = keypoint_candidates(logits, mask, BOX, 2)
    assert positions.shape == (1, 1, 1, 2, 2) and values.shape == (1, 1, 1, 2)
    assert values[0, 0, 0].tolist() == [3.0, 1.0]
    assert torch.allclose(positions[0, 0, 0], torch.tensor([[2.5 / 8, 2.5 / 8],
                                                            [5.5 / 8, 5.5 / 8]]))


def test_offsets_move_a_candidate_within_its_cell():
    logits = _heatmap({(2, 2): 3.0})
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    offsets = torch.zeros(1, 1, 2, 8, 8)
    offsets[0, 0, :, 2, 2] = torch.tensor([0.5, -0.25])  # in cells: (x, y)
    positions, _ = keypoint_candidates(logits, mask, BOX, 1, offsets)
    assert torch.allclose(positions[0, 0, 0, 0], torch.tensor([3.0 / 8, 2.25 / 8]))


def test_a_box_without_enough_peaks_gets_absent_candidates_at_its_centre():
    logits = torch.full((1, 1, 8, 8), float("-inf"))
    logits[0, 0, 3, 3] = 2.0
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :, 6:] = True  # padding is never a candidate
    positions, values = keypoint_candidates(logits, mask, BOX, 3)
    assert values[0, 0, 0].tolist() == [2.0, ABSENT_LOGIT, ABSENT_LOGIT]
    assert torch.equal(positions[0, 0, 0, 1], BOX[0, 0, :2])
    # More candidates than cells: padded the same way.
    positions, values = keypoint_candidates(torch.zeros(1, 1, 2, 2),
                                            torch.zeros(1, 2, 2, dtype=torch.bool),
                                            torch.tensor([[[0.5, 0.5, 1.0, 1.0]]]), 6)
    assert positions.shape == (1, 1, 1, 6, 2) and values[0, 0, 0, 4] == ABSENT_LOGIT


def test_the_pointer_moves_free_keypoints_onto_a_candidate_and_leaves_clicks():
    torch.manual_seed(0)
    model = build_model(preset_config("tiny", keypoint_candidates=2, backbone_weights="none"),
                        coco17()).eval()
    images, mask = torch.randn(1, 3, 128, 128), torch.zeros(1, 128, 128, dtype=torch.bool)
    with torch.no_grad():
        # At the start the pointer stays: the regression's place keeps nearly all the weight.
        for head in model.keypoint_decoder.pointer_heads:
            assert head(torch.randn(4, model.config.hidden_dim)).softmax(-1)[:, 0].min() > 0.99
        state = model.encode(images, mask)
        humans = model.detect_humans(state)
        start = model.default_keypoints(humans.boxes, state)
        pinned = torch.zeros(start.shape[:-1], dtype=torch.bool)
        pinned[0, 0, 5] = True
        last = model.keypoint_decoder.pointer_heads[-1]
        last.bias.copy_(torch.tensor([-30.0, 30.0, -30.0]))  # always the strongest candidate
        out = model.decode_keypoints(state, humans, init_keypoints=start, pinned=pinned)
        positions, _ = keypoint_candidates(state.keypoint_heatmap, state.heatmap_mask,
                                           humans.boxes, 2, state.keypoint_offsets)
    free = ~pinned
    assert torch.allclose(out["pred_keypoints"][free], positions[..., 0, :][free], atol=1e-6)
    assert torch.equal(out["pred_keypoints"][pinned], start[pinned])


def test_candidates_need_the_heatmaps():
    with pytest.raises(ValueError, match="keypoint_candidates needs keypoint_heatmap"):
        preset_config("tiny", keypoint_candidates=2, keypoint_heatmap=False,
                      heatmap_offsets=False)
