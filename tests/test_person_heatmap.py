"""Each detected person's own keypoint heatmaps (ModelConfig.person_heatmaps): they start as
the type maps, the start reads them, and their loss counts only the person's own keypoints."""
from __future__ import annotations

import pytest
import torch

from clickpose.keypoints import coco17
from clickpose.model import build_model, preset_config
from clickpose.model.criterion import SetCriterion, normalize_targets
from clickpose.model.heatmap_loss import person_heatmap_loss
from clickpose.model.keypoint_heatmap import heatmap_start
from clickpose.model.person_heatmap import PersonHeatmapHead
from clickpose.model.presets import ModelConfig


def test_a_persons_maps_start_as_the_type_maps_and_depend_on_its_query():
    head = PersonHeatmapHead(32, 3)
    features, types = torch.randn(2, 32, 6, 8), torch.randn(2, 3, 6, 8)
    mask = torch.zeros(2, 6, 8, dtype=torch.bool)
    content, boxes = torch.randn(2, 4, 32), torch.tensor([0.5, 0.5, 0.3, 0.6]).repeat(2, 4, 1)
    maps = head(features, types, mask, content, boxes)
    assert maps.shape == (2, 4, 3, 6, 8)
    assert torch.equal(maps, types[:, None].expand_as(maps))  # zero filters: the type maps
    torch.nn.init.normal_(head.controller.weight, std=0.1)
    maps = head(features, types, mask, content, boxes)
    assert not torch.allclose(maps[:, 0], maps[:, 1])  # each person its own


def test_the_start_from_per_person_maps_matches_the_shared_maps_it_repeats():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 6, 8, generator=g) * 3
    offsets = torch.randn(2, 3, 2, 6, 8, generator=g) * 0.3
    mask = torch.zeros(2, 6, 8, dtype=torch.bool)
    mask[1, 4:] = True
    boxes = torch.rand(2, 5, 4, generator=g) * 0.4 + 0.3
    layout = torch.rand(2, 5, 3, 2, generator=g)
    shared = heatmap_start(logits, mask, boxes, layout, 0.35, offsets=offsets)
    repeated = logits[:, None].expand(-1, 5, -1, -1, -1)
    torch.testing.assert_close(heatmap_start(repeated, mask, boxes, layout, 0.35, offsets), shared)
    # A person whose own map holds one strong peak starts there.
    own = repeated.clone()
    own[0, 2, 1] = -20.0
    own[0, 2, 1, 1, 6] = 20.0
    start = heatmap_start(own, mask, boxes, layout, 10.0)
    expected = torch.tensor([6.5 / 8, 1.5 / 6])
    torch.testing.assert_close(start[0, 2, 1], expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(start[0, 3], heatmap_start(logits, mask, boxes, layout, 10.0)[0, 3])


def test_a_persons_maps_learn_its_own_keypoints_not_its_neighbours():
    keypoints = torch.tensor([[[0.2, 0.3]], [[0.7, 0.6]]])  # two persons, one keypoint each
    tn = [{"boxes": torch.tensor([[0.2, 0.3, 0.2, 0.4], [0.7, 0.6, 0.2, 0.4]]),
           "keypoints": keypoints, "keypoint_weights": torch.ones(2, 1),
           "area": torch.tensor([400.0, 400.0]), "scale": torch.tensor([64.0, 64.0]),
           "crowd_boxes": torch.zeros(0, 4)}]
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    cells = torch.full((8, 8), -6.0)
    first, second = cells.clone(), cells.clone()
    first[2, 1] = 6.0    # the first person's keypoint: x 0.2 -> cell 1, y 0.3 -> cell 2
    second[4, 5] = 6.0   # the second's: x 0.7 -> 5, y 0.6 -> 4
    indices = [(torch.tensor([0]), torch.tensor([0]))]  # query 0 is the first person
    sigmas = torch.tensor([0.079])

    def loss(query_map):
        return person_heatmap_loss(query_map.view(1, 1, 1, 8, 8), mask, tn, indices, sigmas)

    assert loss(first) < loss(second)
    assert person_heatmap_loss(first.view(1, 1, 1, 8, 8), mask, tn,
                               [(torch.tensor([], dtype=torch.long),) * 2], sigmas) == 0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(preset_config("tiny", person_heatmaps=True), coco17())


def test_detected_persons_start_from_their_maps_and_train_them(model):
    model.train()
    images, mask = torch.randn(2, 3, 128, 160), torch.zeros(2, 128, 160, dtype=torch.bool)
    keypoints = torch.zeros(1, 17, 3)
    keypoints[0, :, :2] = torch.tensor([60.0, 50.0]) + torch.randn(17, 2) * 10
    keypoints[0, :, 2] = 2
    targets = [{"boxes": torch.tensor([[30.0, 20.0, 90.0, 100.0]]), "keypoints": keypoints,
                "size": torch.tensor([128, 160])} for _ in range(2)]
    state = model.encode(images, mask)
    humans = model.detect_humans(state)
    outputs = model.decode_keypoints(state, humans)
    assert outputs["person_heatmap"].shape[:3] == (2, humans.content.shape[1], 17)
    losses = SetCriterion(model.schema)(outputs, normalize_targets(targets), normalized=True)
    assert torch.isfinite(losses["loss_person"]) and losses["loss_person"] > 0
    losses["loss_person"].backward()
    assert model.person_heatmap.controller.weight.grad.abs().sum() > 0
    # Drawn boxes carry no query of their own: they start from the type maps.
    drawn = model.humans_from_boxes(humans.boxes.detach())
    assert model.person_maps(state, drawn) is None
    assert "person_heatmap" not in model.decode_keypoints(state, drawn)


def test_person_heatmaps_need_the_type_heatmaps():
    with pytest.raises(ValueError, match="person_heatmaps needs keypoint_heatmap"):
        ModelConfig(person_heatmaps=True)
