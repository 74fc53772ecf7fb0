"""Cached backbone features: the maps the backbone would give, computed once per (image,
flip), within the memory limit; refused for a backbone that trains."""
import json

import pytest
import torch

from clickpose.data import collate_batch, load_coco_dataset
from clickpose.data.synthetic import generate_dataset
from clickpose.data.transforms import flip_resize_transforms
from clickpose.model import build_model, preset_config
from clickpose.train.feature_cache import BackboneFeatureCache, backbone_is_frozen
from clickpose.train.loop import TrainConfig, train

SMALL = {"num_queries": 30, "max_humans": 6, "enc_layers": 1, "keypoint_layers": 2}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("cache") / "train", 4, seed=5, size=96,
                            max_persons=2, progress=False)


@pytest.fixture(scope="module")
def model(folder):
    schema = load_coco_dataset(folder).schema
    return build_model(preset_config("tiny", image_size=96, **SMALL), schema).eval()


def _item(dataset, index: int, flipped: bool, size: int):
    """Item `index` resized to `size`, flipped or not (the flip draws from the generator)."""
    dataset.transforms = flip_resize_transforms(dataset.schema, size, size)
    for seed in range(50):
        image, target = dataset.transforms(*_raw(dataset, index), torch.Generator().manual_seed(seed))
        if target.get("flipped", False) == flipped:
            return image, target
    raise AssertionError("no seed gave the flip asked for")


def _raw(dataset, index):
    from clickpose.data import load_image, record_target

    record = dataset.records[index]
    return load_image(record.path), record_target(record)


def test_tiny_backbone_counts_as_frozen(model):
    assert backbone_is_frozen(model)
    trained = build_model(preset_config("tiny", frozen_backbone_blocks=0, **SMALL), model.schema)
    assert not backbone_is_frozen(trained)


def test_cached_maps_match_the_backbone_for_mixed_batches(folder, model):
    dataset = load_coco_dataset(folder)
    cache = BackboneFeatureCache()
    first = [_item(dataset, 0, False, 96), _item(dataset, 1, True, 64)]
    images, mask, targets = collate_batch(first)
    got = cache.features(model.backbone, images, mask, targets)
    assert cache.misses == 2 and len(cache) == 2
    # A later batch: one cached item, one new, one the same image unflipped (a new key).
    later = [_item(dataset, 1, True, 64), _item(dataset, 2, False, 96), _item(dataset, 1, False, 64)]
    images, mask, targets = collate_batch(later)
    got = cache.features(model.backbone, images, mask, targets)
    assert cache.hits == 1 and cache.misses == 4 and len(cache) == 4
    with torch.no_grad():
        expected = model.backbone(images, mask)
    for (feature, level_mask), (want, want_mask) in zip(got, expected):
        assert feature.shape == want.shape and torch.equal(level_mask, want_mask)
        valid = ~level_mask[:, None].expand_as(feature)
        # Half precision, and a border cell next to padding may differ slightly.
        assert torch.allclose(feature[valid], want[valid], atol=0.05, rtol=0.02)


def test_memory_limit_keeps_computing_without_storing(folder, model):
    dataset = load_coco_dataset(folder)
    cache = BackboneFeatureCache(limit_mb=0.0)
    images, mask, targets = collate_batch([_item(dataset, 0, False, 96)])
    features = cache.features(model.backbone, images, mask, targets)
    assert len(cache) == 0 and cache.bytes == 0 and features[0][0].shape[0] == 1


def test_training_with_the_cache_reuses_features_in_the_second_epoch(folder, tmp_path):
    cfg = TrainConfig(data=folder, out=tmp_path / "run", epochs=2, batch_size=2, workers=0,
                      image_size=96, max_size=96, dn_groups=1, progress=False,
                      feedback_max_rounds=1, model_overrides=SMALL, cache_backbone_features=True)
    train(cfg, log=lambda line: None)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
               .splitlines()]
    first, second = (r["train"]["feature_cache"] for r in records)
    assert first["misses"] == 4 and first["hits"] == 0
    # Epoch 2 sees each image again, flipped or not: the repeated inputs come from the cache
    # (cumulative counts), each new one is computed once and kept.
    assert second["hits"] + second["misses"] == 8 and second["hits"] >= 1
    assert second["items"] == second["misses"] == 8 - second["hits"]


def test_cache_is_refused_for_a_backbone_that_trains(folder, tmp_path):
    cfg = TrainConfig(data=folder, out=tmp_path / "run", epochs=1, batch_size=2, workers=0,
                      image_size=96, progress=False, cache_backbone_features=True,
                      model_overrides={**SMALL, "frozen_backbone_blocks": 0})
    with pytest.raises(ValueError, match="--cache-backbone-features"):
        train(cfg, log=lambda line: None)
