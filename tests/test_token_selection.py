"""The encoder updating only its foreground tokens (ModelConfig.enc_token_ratio): which
tokens are chosen, what the scorer learns, and that the chosen tokens are encoded as a
dense encoder would while the others keep their input."""
from __future__ import annotations

import math

import pytest
import torch

from clickpose.keypoints import coco17
from clickpose.model import build_model, preset_config
from clickpose.model.criterion import SetCriterion, normalize_targets
from clickpose.model.encoder import Encoder
from clickpose.model.token_selection import (
    foreground_targets,
    select_tokens,
    token_centres,
    token_saliency_loss,
)


def test_the_best_scored_tokens_are_chosen_and_padding_last():
    logits = torch.tensor([[0.1, 5.0, -2.0, 3.0, 9.0, 0.0]])
    padding = torch.tensor([[False, False, False, False, True, False]])
    chosen = select_tokens(logits, padding, ratio=0.5)
    assert sorted(chosen[0].tolist()) == [0, 1, 3]  # 4 is the best score but padding
    assert select_tokens(logits, padding, ratio=0.01).shape == (1, 1)  # at least one
    assert select_tokens(logits, padding, ratio=1.0).shape == (1, 6)


def test_token_centres_are_in_the_unpadded_frame_of_each_level():
    # Level 0: 4 x 4 cells of which the image covers 2 wide and 4 high; level 1: 2 x 2.
    valid = torch.tensor([[[0.5, 1.0], [0.5, 1.0]]])
    centres, halves = token_centres([(4, 4), (2, 2)], valid)
    assert centres.shape == (1, 20, 2) and halves.shape == (1, 20, 2)
    torch.testing.assert_close(centres[0, 0], torch.tensor([0.25, 0.125]))  # cell (0, 0)
    torch.testing.assert_close(centres[0, 16], torch.tensor([0.5, 0.25]))   # level 1, (0, 0)
    torch.testing.assert_close(halves[0, 0], torch.tensor([0.25, 0.125]))
    torch.testing.assert_close(halves[0, 16], torch.tensor([0.5, 0.25]))


def test_a_token_is_foreground_where_its_cell_overlaps_a_box_or_a_crowd_region():
    centres, halves = token_centres([(4, 4)], torch.ones(2, 1, 2))
    person = {"boxes": torch.tensor([[0.25, 0.25, 0.2, 0.2]]), "crowd_boxes": torch.zeros(0, 4)}
    crowd = {"boxes": torch.zeros(0, 4), "crowd_boxes": torch.tensor([[0.8, 0.8, 1.0, 1.0]])}
    target = foreground_targets(centres, halves, [person, crowd]).view(2, 4, 4)
    expected_person = torch.zeros(4, 4)
    expected_person[:2, :2] = 1  # the box spans x, y in [0.15, 0.35]: cells 0 and 1 each way
    expected_crowd = torch.zeros(4, 4)
    expected_crowd[3, 3] = 1
    assert torch.equal(target[0], expected_person) and torch.equal(target[1], expected_crowd)


def test_the_saliency_loss_falls_as_logits_agree_with_the_boxes():
    centres, halves = token_centres([(4, 4)], torch.ones(1, 1, 2))
    targets = [{"boxes": torch.tensor([[0.25, 0.25, 0.2, 0.2]]), "crowd_boxes": torch.zeros(0, 4)}]
    foreground = foreground_targets(centres, halves, targets)
    padding = torch.zeros(1, 16, dtype=torch.bool)

    def loss(logits):
        return token_saliency_loss({"logits": logits, "centres": centres, "halves": halves,
                                    "padding": padding}, targets)

    agreeing = (foreground * 2 - 1) * 4
    assert loss(agreeing) < loss(torch.zeros(1, 16)) < loss(-agreeing)
    padding[:] = True  # nothing unpadded: nothing to learn
    assert loss(agreeing) == 0


def test_chosen_tokens_are_encoded_as_densely_and_the_others_keep_their_input():
    torch.manual_seed(0)
    encoder = Encoder(2, 32, 64, 2, 4, 2, 0.0).eval()
    shapes = [(6, 8), (3, 4)]
    src, pos = torch.randn(2, 60, 32), torch.randn(2, 60, 32)
    padding = torch.zeros(2, 60, dtype=torch.bool)
    valid = torch.ones(2, 2, 2)
    with torch.no_grad():
        dense = encoder(src, pos, padding, shapes, valid)
        every = torch.stack([torch.randperm(60), torch.randperm(60)])  # all, in any order
        torch.testing.assert_close(encoder(src, pos, padding, shapes, valid, every), dense)
        some = torch.tensor([[0, 5, 50, 59], [1, 2, 3, 4]])
        sparse = encoder(src, pos, padding, shapes, valid, some)
    for b in range(2):
        others = torch.ones(60, dtype=torch.bool)
        others[some[b]] = False
        assert torch.equal(sparse[b, others], src[b, others])
        assert not torch.allclose(sparse[b, some[b]], src[b, some[b]])


@pytest.fixture(scope="module")
def sparse_model():
    torch.manual_seed(0)
    return build_model(preset_config("tiny", enc_token_ratio=0.25), coco17())


def test_a_sparse_model_trains_its_scorer_and_predicts(sparse_model):
    model = sparse_model.train()
    images, mask = torch.randn(2, 3, 128, 160), torch.zeros(2, 128, 160, dtype=torch.bool)
    keypoints = torch.zeros(1, 17, 3)
    keypoints[0, :, :2] = torch.tensor([60.0, 50.0]) + torch.randn(17, 2) * 10
    keypoints[0, :, 2] = 2
    targets = [{"boxes": torch.tensor([[30.0, 20.0, 90.0, 100.0]]), "keypoints": keypoints,
                "size": torch.tensor([128, 160])} for _ in range(2)]
    inputs = []
    hook = model.encoder.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    state = model.encode(images, mask)
    hook.remove()
    # The encoder updated a quarter of the tokens; the others are the input projections'.
    tokens = state.memory.shape[1]
    updated = (state.memory != inputs[0]).any(-1).sum(1)
    assert updated.tolist() == [math.ceil(0.25 * tokens)] * 2
    outputs = model.decode_keypoints(state, model.detect_humans(state))
    losses = SetCriterion(model.schema)(outputs, normalize_targets(targets), normalized=True)
    assert torch.isfinite(losses["loss_saliency"]) and losses["loss_saliency"] > 0
    losses["loss_saliency"].backward()
    assert model.token_scorer.mlp[0].weight.grad.abs().sum() > 0
    model.eval()
    image = (torch.rand(120, 150, 3) * 255).to(torch.uint8).numpy()
    poses = model.predict(image)
    assert poses.keypoints.shape[1:] == (17, 2)
