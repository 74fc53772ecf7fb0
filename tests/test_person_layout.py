"""Each person's own expected layout (ModelConfig.person_layout): it starts as the shared
layout, it moves a person's start to the evidence its query points at, and it learns each
matched person's pose."""
import pytest
import torch

from clickpose.keypoints import coco17
from clickpose.model import build_model, preset_config
from clickpose.model.checkpoint import load_model, save_checkpoint
from clickpose.model.criterion import SetCriterion
from clickpose.model.keypoint_heatmap import cell_centres
from clickpose.model.presets import ModelConfig


def _model(person_layout: bool = True):
    torch.manual_seed(0)
    config = preset_config("tiny", num_queries=20, max_humans=4, person_layout=person_layout)
    return build_model(config, coco17()).eval()


def _inputs():
    return torch.randn(1, 3, 128, 160), torch.zeros(1, 128, 160, dtype=torch.bool)


def _target():
    """One person in a 160 x 128 image, every keypoint labelled."""
    generator = torch.Generator().manual_seed(1)
    xy = torch.rand(1, 17, 2, generator=generator) * torch.tensor([50.0, 110.0]) + torch.tensor(
        [20.0, 10.0])
    return [{"boxes": torch.tensor([[20.0, 10.0, 70.0, 120.0]]),
             "keypoints": torch.cat([xy, torch.full((1, 17, 1), 2.0)], -1),
             "area": torch.tensor([3000.0]), "size": torch.tensor([128, 160])}]


def test_needs_heatmaps():
    with pytest.raises(ValueError, match="person_layout needs keypoint_heatmap"):
        ModelConfig(person_layout=True)


def test_the_option_leaves_the_rest_of_the_network_as_it_was():
    # Its own draw of the random stream: every other weight is the one the run without the
    # head gets, so an A/B differs by the head alone.
    with_head, without = _model(True).state_dict(), _model(False).state_dict()
    assert set(with_head) - set(without) == {k for k in with_head if k.startswith("person_layout.")}
    assert all(torch.equal(without[k], with_head[k]) for k in without)


def test_a_new_head_starts_every_person_at_the_shared_layout():
    model = _model()
    images, mask = _inputs()
    with torch.no_grad():
        state = model.encode(images, mask)
        humans = model.detect_humans(state)
        own = model.default_keypoints(humans.boxes, state, humans.content)
        shared = model.default_keypoints(humans.boxes, state)
    assert torch.equal(own, shared)


def test_each_person_starts_at_the_peak_its_own_layout_points_to():
    model = _model()
    images, mask = _inputs()
    with torch.no_grad():
        state = model.encode(images, mask)
    # Two nose peaks of equal strength in one box, either side of the shared place.
    xs, ys = cell_centres(state.finest_mask)
    left, right = 5, 14                               # x 0.275 and 0.725 of 20 cells
    state.keypoint_heatmap = torch.full_like(state.keypoint_heatmap, -8.0)
    state.keypoint_heatmap[0, 0, 6, left] = 6.0
    state.keypoint_heatmap[0, 0, 6, right] = 6.0
    boxes = torch.tensor([[[0.5, 0.5, 0.8, 1.0], [0.5, 0.5, 0.8, 1.0]]])
    with torch.no_grad():
        model.keypoint_decoder.keypoint_layout[0] = torch.tensor([0.0, -0.4])
    model.config = model.config.model_copy(update={"heatmap_prior_sigma": 0.15})
    # The head reads the query's first channel as "the nose lies this far right".
    with torch.no_grad():
        for layer in model.person_layout.mlp.layers:
            layer.weight.zero_()
            layer.bias.zero_()
            layer.weight[0, 0] = 1.0
        # tanh(0.637) * 0.5 * 0.8 = 0.225: the layout's x moves from 0.5 to the right peak.
        model.person_layout.mlp.layers[-1].weight[0, 0] = 0.637
    content = torch.zeros(1, 2, model.config.hidden_dim)
    content[0, 1, 0] = 1.0
    with torch.no_grad():
        start = model.default_keypoints(boxes, state, content)[0, :, 0]
        shared = model.default_keypoints(boxes, state)[0, :, 0]
    assert abs(shared[0, 0] - 0.5) < 0.01            # the shared prior: between the two
    assert torch.allclose(start[0], shared[0])       # a query that says nothing: the same
    assert abs(start[1, 0] - xs[0, right]) < 0.02 and abs(start[1, 1] - ys[0, 6]) < 0.02


def test_layouts_learn_the_matched_persons_pose():
    model = _model().train()
    images, mask = _inputs()
    criterion = SetCriterion(model.schema)
    optimizer = torch.optim.Adam(model.person_layout.parameters(), lr=1e-2)
    with torch.no_grad():
        state = model.encode(images, mask)
    # The person's box as the query's (normalized cxcywh of _target's box), a sure person.
    humans = model.humans_from_boxes(torch.tensor([[[45 / 160, 65 / 128, 50 / 160, 110 / 128]]]),
                                     torch.full((1, 1, 1), 5.0))
    losses = []
    for _ in range(40):
        outputs = model.decode_keypoints(state, humans)
        loss = criterion(outputs, _target())["loss_layout"]
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.1 * losses[0]
    # Only a decode from the model's own start has layouts to learn.
    again = model.decode_keypoints(state, humans, init_keypoints=outputs["pred_keypoints"])
    assert "pred_layout" not in again
    assert "loss_layout" not in criterion(again, _target())


def test_checkpoint_round_trip_keeps_the_head(tmp_path):
    model = _model()
    with torch.no_grad():
        for parameter in model.person_layout.parameters():
            parameter.normal_(std=0.1)
    images, mask = _inputs()
    loaded = load_model(save_checkpoint(tmp_path / "ckpt", model))
    assert loaded.config.person_layout
    with torch.no_grad():
        state = model.encode(images, mask)
        humans = model.detect_humans(state)
        expected = model.default_keypoints(humans.boxes, state, humans.content)
        state = loaded.encode(images, mask)
        humans = loaded.detect_humans(state)
        got = loaded.default_keypoints(humans.boxes, state, humans.content)
    assert torch.equal(expected, got)
