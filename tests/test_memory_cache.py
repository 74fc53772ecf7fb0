"""A frozen encoder's cached output: the memory the encoder would give, computed once per
(image, flip); steps on it leave the encoder's weights exactly as they were and train the
rest; the training loop freezes it after the fraction of the run it is told."""
import json
import time

import pytest
import torch
from typer.testing import CliRunner

from clickpose.cli.main import app
from clickpose.data import collate_batch, load_coco_dataset
from clickpose.data.synthetic import generate_dataset
from clickpose.data.transforms import flip_resize_transforms
from clickpose.model import build_model, preset_config
from clickpose.model.criterion import SetCriterion
from clickpose.model.pose_errors import ErrorProbs
from clickpose.train.engine import StepOptions, compute_losses
from clickpose.train.feature_cache import BackboneFeatureCache
from clickpose.train.loop import TrainConfig, encoder_freeze_due, train
from clickpose.train.memory_cache import (
    EncoderMemoryCache,
    encoder_is_frozen,
    encoder_parts,
    freeze_encoder,
)
from clickpose.train.optim import build_optimizer

SMALL = {"num_queries": 30, "max_humans": 6, "enc_layers": 1, "keypoint_layers": 1}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("memory") / "train", 4, seed=6, size=96,
                            max_persons=2, progress=False)


def _model(schema, **overrides):
    torch.manual_seed(0)
    return build_model(preset_config("tiny", image_size=96, **{**SMALL, **overrides}), schema)


def _batch(folder, sizes):
    """Items 0.. of the dataset resized to `sizes` (unflipped: seed 0 may flip, the key says)."""
    dataset = load_coco_dataset(folder)
    items = []
    for index, size in enumerate(sizes):
        dataset.transforms = flip_resize_transforms(dataset.schema, size, size)
        items.append(dataset[index])
    return dataset.schema, collate_batch(items)


def test_cached_memory_is_the_encoders_and_decodes_the_same(folder):
    schema, (images, mask, targets) = _batch(folder, [96, 96, 96])
    model = _model(schema).eval()
    freeze_encoder(model)
    features = BackboneFeatureCache().features(model.backbone, images, mask, targets)
    cache = EncoderMemoryCache()
    with torch.no_grad():
        want = model.encode(images, mask, features)
        first = cache.memory(model, images, mask, features, targets)
        again = cache.memory(model, images, mask, features, targets)
        state = model.encode(images, mask, features, again)
    assert (cache.misses, cache.hits, len(cache)) == (3, 3, 3)
    assert torch.equal(first, again)
    # Half precision in the cache.
    assert torch.allclose(first, want.memory, atol=0.01, rtol=0.01)
    assert torch.allclose(state.keypoint_heatmap, want.keypoint_heatmap, atol=0.01, rtol=0.01)
    assert state.level_shapes == want.level_shapes
    assert state.level_start_index == want.level_start_index
    assert torch.equal(state.pos, want.pos) and torch.equal(state.memory_mask, want.memory_mask)


def test_mixed_sizes_keep_each_items_own_cells_and_zero_padding(folder):
    schema, (images, mask, targets) = _batch(folder, [96, 64])
    model = _model(schema).eval()
    freeze_encoder(model)
    features = BackboneFeatureCache().features(model.backbone, images, mask, targets)
    with torch.no_grad():
        want = model.encode(images, mask, features)
        got = EncoderMemoryCache().memory(model, images, mask, features, targets)
    valid = ~want.memory_mask
    assert got.shape == want.memory.shape
    assert torch.allclose(got[valid], want.memory[valid], atol=0.01, rtol=0.01)
    assert want.memory_mask[1].any() and not got[1][want.memory_mask[1]].any()


def test_cache_refuses_an_encoder_that_trains(folder):
    schema, (images, mask, targets) = _batch(folder, [96])
    model = _model(schema)
    features = BackboneFeatureCache().features(model.backbone, images, mask, targets)
    with pytest.raises(RuntimeError, match="freeze_encoder"):
        EncoderMemoryCache().memory(model, images, mask, features, targets)


def test_steps_on_cached_memory_leave_the_encoder_and_train_the_rest(folder):
    schema, (images, mask, targets) = _batch(folder, [96, 96])
    model = _model(schema).train()
    freeze_encoder(model)
    assert encoder_is_frozen(model)
    encoder_before = [p.detach().clone() for p in encoder_parts(model)]
    decoder_before = [p.detach().clone() for p in model.keypoint_decoder.parameters()]
    optimizer = build_optimizer(model, lr=1e-3)
    features, memory = BackboneFeatureCache(), EncoderMemoryCache()
    criterion, generator = SetCriterion(schema), torch.Generator().manual_seed(0)
    for _ in range(2):
        losses = compute_losses(model, criterion, images, mask, targets, schema, generator,
                                StepOptions(dn_groups=1, error_probs=ErrorProbs(),
                                            feedback_max_rounds=1), features, memory)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
    assert memory.hits == 2 and memory.misses == 2
    assert all(torch.equal(a, b) for a, b in zip(encoder_before, encoder_parts(model)))
    assert any(not torch.equal(a, b)
               for a, b in zip(decoder_before, model.keypoint_decoder.parameters()))


def test_training_freezes_the_encoder_after_its_fraction_of_the_epochs(folder, tmp_path):
    lines = []
    cfg = TrainConfig(data=folder, out=tmp_path / "run", epochs=2, batch_size=2, workers=0,
                      image_size=96, max_size=96, dn_groups=1, progress=False,
                      feedback_max_rounds=1, model_overrides=SMALL, cache_backbone_features=True,
                      freeze_encoder_after=0.5, click_prior_images=0)
    train(cfg, log=lines.append)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
               .splitlines()]
    assert "memory_cache" not in records[0]["train"]
    # Epoch 1 computes each of its 4 items' memory once, with the encoder frozen.
    assert records[1]["train"]["memory_cache"]["misses"] == 4
    assert records[1]["train"]["memory_cache"]["items"] == 4
    assert any("epoch 1: the encoder stops training" in line for line in lines)


def test_freeze_point_follows_the_time_limit_when_there_is_one(folder, tmp_path):
    timed = TrainConfig(data=folder, out=tmp_path, epochs=10, max_minutes=10,
                        cache_backbone_features=True, freeze_encoder_after=0.5)
    assert not encoder_freeze_due(timed, epoch=9, started=time.monotonic() - 299)
    assert encoder_freeze_due(timed, epoch=0, started=time.monotonic() - 301)
    by_epochs = timed.model_copy(update={"max_minutes": None})
    assert not encoder_freeze_due(by_epochs, epoch=4, started=time.monotonic())
    assert encoder_freeze_due(by_epochs, epoch=5, started=time.monotonic())


def test_freezing_needs_the_backbone_features_cached(folder, tmp_path):
    with pytest.raises(ValueError, match="--cache-backbone-features"):
        TrainConfig(data=folder, out=tmp_path, freeze_encoder_after=0.5)



def test_cli_says_which_option_freezing_needs(folder, tmp_path):
    result = CliRunner().invoke(app, ["train", "--data", str(folder), "--out",
                                      str(tmp_path / "run"), "--freeze-encoder-after", "0.5"])
    assert result.exit_code == 1
    assert "add --cache-backbone-features" in result.output
    assert "input_value" not in result.output and not (tmp_path / "run").exists()
