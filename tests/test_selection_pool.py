"""Streaming pool scoring: batches, shards, bounded memory, stats, invalid predictions."""
from __future__ import annotations

import weakref
from collections import Counter

import numpy as np
import pytest

from clickpose.poses import Poses
from selection import (
    PoolScores,
    PredictionError,
    least_confidence,
    merge_pool_scores,
    score_pool,
    select_batch,
    shard_ids,
    shard_of,
)
from selection.ids import stable_hash

K = 17


def fake_model(num_persons: int = 3, nan_ids=()):
    """A deterministic stand-in predictor: each image's poses follow from its id."""
    calls = []

    def predict_batch(ids):
        calls.append(list(ids))
        out = []
        for image_id in ids:
            rng = np.random.default_rng(stable_hash(str(image_id)))
            kpts = rng.uniform(0, 100, size=(num_persons, K, 2))
            conf = rng.uniform(0, 1, size=(num_persons, K))
            if image_id in nan_ids:
                conf[0, 0] = np.nan
            out.append(Poses(kpts, conf, np.full((num_persons, K), 2),
                             np.tile([0.0, 0.0, 100.0, 100.0], (num_persons, 1)),
                             rng.uniform(0.3, 1, size=num_persons)))
        return out

    return predict_batch, calls


def test_shards_cover_the_pool_exactly_once():
    ids = list(range(1000)) + [f"img_{i}.jpg" for i in range(500)]
    n = 4
    owned = [list(shard_ids(ids, (i, n))) for i in range(n)]
    counts = Counter(x for part in owned for x in part)
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    assert all(200 < len(part) < 550 for part in owned)      # roughly balanced by the hash
    # the partition depends on the id, not on the order it is listed in
    assert list(shard_ids(reversed(ids), (2, n))) == list(reversed(owned[2]))
    assert shard_of("img_3.jpg", 4) == shard_of("img_3.jpg", 4)
    with pytest.raises(ValueError, match="shard is \\(4, 4\\)"):
        list(shard_ids(ids, (4, 4)))


def test_sharded_scoring_equals_one_pass_and_merges():
    ids = list(range(103))
    predict, _ = fake_model()
    whole = score_pool(ids, predict, least_confidence, batch_size=10)
    parts = [score_pool(iter(ids), predict, least_confidence, batch_size=7, shard=(i, 3))
             for i in range(3)]
    merged = merge_pool_scores(parts)
    assert sorted(s.image_id for s in merged.scores) == ids
    assert merged.by_id() == whole.by_id()
    assert [st.shard for st in merged.stats] == [(0, 3), (1, 3), (2, 3)]
    assert sum(st.images for st in merged.stats) == 103
    with pytest.raises(ValueError, match="is scored in part 0 and part 1"):
        merge_pool_scores([parts[0], parts[0]])


def test_batches_are_bounded_and_freed_before_the_next_prediction():
    predict, calls = fake_model()
    alive: list[weakref.ref] = []

    def tracking_predict(ids):
        # every earlier batch's predictions must be gone by now
        assert sum(r() is not None for r in alive) == 0
        out = predict(ids)
        alive.extend(weakref.ref(p) for p in out)
        return out

    result = score_pool(range(50), tracking_predict, least_confidence, batch_size=8)
    assert [len(c) for c in calls] == [8] * 6 + [2]
    assert len(result.scores) == 50
    stats = result.stats[0]
    assert stats.batches == 7 and stats.images == 50
    assert stats.seconds > 0 and stats.images_per_s == pytest.approx(50 / stats.seconds)
    assert stats.predict_seconds + stats.score_seconds <= stats.seconds


def test_invalid_predictions_raise_or_are_skipped_and_recorded():
    predict, _ = fake_model(nan_ids={5, 9})
    with pytest.raises(PredictionError, match="image 5: prediction field 'keypoint_scores'"):
        score_pool(range(12), predict, least_confidence, batch_size=4)
    result = score_pool(range(12), predict, least_confidence, batch_size=4, on_invalid="skip")
    assert len(result.scores) == 10
    assert [s.image_id for s in result.stats[0].skipped] == [5, 9]
    assert "non-finite" in result.stats[0].skipped[0].error


def test_predict_batch_must_return_one_prediction_per_image():
    with pytest.raises(ValueError, match="returned 1 predictions for 3 images"):
        score_pool(range(3), lambda ids: [Poses.empty(K)], least_confidence, batch_size=3)


def test_pool_scores_json_round_trip_feeds_selection(tmp_path):
    predict, _ = fake_model()
    result = score_pool([f"im{i}" for i in range(20)], predict, least_confidence, batch_size=6,
                        progress=True)
    result.save(tmp_path / "scores.json")
    again = PoolScores.load(tmp_path / "scores.json")
    assert again.scores == result.scores
    assert again.stats[0].images == 20
    assert '"images_per_s"' in (tmp_path / "scores.json").read_text()
    chosen = select_batch(again.scores, budget_images=5)
    best = sorted(result.scores, key=lambda s: -s.score)[:5]
    assert chosen.image_ids == [s.image_id for s in best]
