"""Person ranking: the heatmaps' support is read where each keypoint is, a pose on the
evidence outranks one beside it, and duplicates leave predictions and new sessions."""
import numpy as np
import pytest
import torch

from clickpose.keypoints import coco17
from clickpose.model.clickpose_model import build_model
from clickpose.model.inference import outputs_to_poses
from clickpose.model.person_score import heatmap_support, person_scores, ranked_distinct
from clickpose.model.presets import ModelConfig


def _peaked_heatmap(mask, peaks):
    """(1, K, h, w) logits: -8 everywhere, +8 on the (row, col) cell of each type."""
    _, h, w = mask.shape
    logits = torch.full((1, len(peaks), h, w), -8.0)
    for k, (row, col) in enumerate(peaks):
        logits[0, k, row, col] = 8.0
    return logits


def test_support_is_read_at_each_types_own_cell_in_the_unpadded_extent():
    mask = torch.zeros(1, 8, 16, dtype=torch.bool)
    mask[:, :, 8:] = True  # right half padding: the image spans 8 cells across
    logits = _peaked_heatmap(mask, [(2, 5), (6, 1)])
    # Cell (row 2, col 5) centre: x = 5.5 / 8, y = 2.5 / 8 of the unpadded image.
    on = torch.tensor([[[[5.5 / 8, 2.5 / 8], [1.5 / 8, 6.5 / 8]]]])
    swapped = on.flip(2)  # each keypoint on the other type's peak
    support_on = heatmap_support(logits, mask, on)
    support_swapped = heatmap_support(logits, mask, swapped)
    assert support_on.shape == (1, 1, 2)
    assert torch.all(support_on > 0.99)
    assert torch.all(support_swapped < 0.01)


def test_a_pose_on_the_evidence_outranks_an_equally_confident_one_beside_it():
    logits = torch.zeros(1, 2, 1)  # the decoder cannot tell them apart (p = 0.5 each)
    support = torch.tensor([[[0.9, 0.8, 0.7], [0.1, 0.2, 0.1]]])
    scores = person_scores(logits, support)
    assert scores[0, 0] > scores[0, 1]
    assert torch.all((scores >= 0) & (scores <= 1))
    # Without heatmaps the person probability is the score.
    assert torch.allclose(person_scores(logits, None), torch.full((1, 2), 0.5))


def test_duplicates_are_dropped_and_the_rest_come_best_first():
    boxes = torch.tensor([[0.30, 0.5, 0.2, 0.6],     # a person
                          [0.31, 0.5, 0.2, 0.6],     # its duplicate, scored a bit lower
                          [0.80, 0.5, 0.2, 0.6]])    # another person
    scores = torch.tensor([0.9, 0.8, 0.5])
    assert ranked_distinct(boxes, scores, 0.5).tolist() == [0, 2]
    assert ranked_distinct(boxes, scores, None).tolist() == [0, 1, 2]
    assert ranked_distinct(boxes[:0], scores[:0], 0.5).tolist() == []


def test_postprocess_ranks_by_pred_scores_and_drops_duplicates():
    outputs = {
        "pred_logits": torch.tensor([[[4.0], [3.0], [-1.0]]]),
        "pred_boxes": torch.tensor([[[0.30, 0.5, 0.2, 0.6], [0.31, 0.5, 0.2, 0.6],
                                     [0.80, 0.5, 0.2, 0.6]]]),
        "pred_keypoints": torch.rand(1, 3, 17, 2),
        "pred_visibility": torch.zeros(1, 3, 17),
        "pred_scores": torch.tensor([[0.2, 0.6, 0.4]]),  # the duplicate is the better pose
    }
    poses = outputs_to_poses(outputs, [(100, 200)], duplicate_iou=0.5)[0]
    assert poses.num_persons == 2
    np.testing.assert_allclose(poses.scores, [0.6, 0.4], rtol=1e-6)
    np.testing.assert_allclose(poses.boxes[0, 0], (0.31 - 0.1) * 200, rtol=1e-5)
    assert outputs_to_poses(outputs, [(100, 200)])[0].num_persons == 3


@pytest.mark.parametrize("duplicate_iou", [None, 0.5])
def test_model_predictions_have_no_two_boxes_over_the_duplicate_iou(duplicate_iou):
    torch.manual_seed(0)
    config = ModelConfig(preset="test", keypoint_heatmap=True, num_queries=30, max_humans=10,
                         duplicate_iou=duplicate_iou)
    model = build_model(config, coco17()).eval()
    image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    poses = model.predict(image)
    assert np.all(np.diff(poses.scores) <= 1e-9)  # best first
    # The model's own outputs with its worst person made a copy of its best one's box.
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 96, 128), torch.zeros(1, 96, 128, dtype=torch.bool))
    order = outputs["pred_scores"][0].argsort(descending=True)
    outputs["pred_boxes"][0, order[-1]] = outputs["pred_boxes"][0, order[0]]
    with_copy = model.postprocess(outputs, [(96, 128)])[0]
    if duplicate_iou is None:
        assert poses.num_persons == with_copy.num_persons == config.max_humans
        return
    assert with_copy.num_persons == config.max_humans - 1
    from torchvision.ops import box_iou

    iou = box_iou(torch.tensor(poses.boxes), torch.tensor(poses.boxes))
    iou.fill_diagonal_(0.0)
    assert iou.max() <= duplicate_iou + 1e-6
    # A session opened on the predictions has them; one opened bare keeps every candidate,
    # as the NoC protocol's matching expects.
    assert model.session(image, initial_poses=poses).num_persons == poses.num_persons
    assert model.session(image).num_persons == config.max_humans
