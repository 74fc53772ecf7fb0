"""Predicted clicks calibrated on the clicks labeling took: the fit, its use in select_batch,
and the campaign history it reads from the store."""
from __future__ import annotations

import io

import numpy as np
import pytest
from flows_fixtures import tiny_config, tiny_data
from PIL import Image

from clickpose.campaign.click_costs import click_history, round_calibration
from flows.tasks import selection_records
from selection import ImageScore, select_batch
from selection.click_calibration import MIN_PAIRS, PAIRS_PER_WEIGHT, ClickCalibration
from selection.click_features import FEATURES
from storage import Datasets, open_store


def test_fit_recovers_an_affine_relation_and_lowers_the_error():
    rng = np.random.default_rng(0)
    predicted = rng.uniform(0, 10, 40)
    actual = 4.5 * predicted + 3.0 + rng.normal(0, 0.2, 40)
    calibration = ClickCalibration.fit(predicted, actual)
    assert calibration.fitted and calibration.pairs == 40
    assert calibration.slope == pytest.approx(4.5, abs=0.05)
    assert calibration.offset == pytest.approx(3.0, abs=0.3)
    assert calibration.mean_abs_error_after < 0.3
    assert calibration.mean_abs_error_before > 10
    assert calibration.rank_correlation > 0.99
    np.testing.assert_allclose(calibration.clicks(np.array([0.0, 2.0])),
                               [calibration.offset, calibration.offset + 2 * calibration.slope])


def test_slope_and_offset_stay_non_negative():
    predicted = np.arange(1.0, 13.0)
    # Least squares would give offset -5: an image predicted at 0 clicks would cost -5.
    calibration = ClickCalibration.fit(predicted, np.maximum(2 * predicted - 5, 0))
    assert calibration.offset == 0.0 and calibration.slope > 0
    falling = ClickCalibration.fit(predicted, 20 - predicted)   # more predicted, fewer taken
    assert falling.slope == 0.0 and falling.offset == pytest.approx(np.mean(20 - predicted))


def test_too_few_pairs_leave_predictions_as_they_are():
    calibration = ClickCalibration.fit([1, 2, 3], [5, 9, 14])
    assert not calibration.fitted and calibration.clicks(7.0) == 7.0
    assert f"fewer than {MIN_PAIRS}" in calibration.note and "3 labeled images" in calibration.note


def test_bad_click_counts_are_refused_by_pair():
    with pytest.raises(ValueError, match="actual clicks of pair 2 is nan"):
        ClickCalibration.fit([1] * 12, [1, 2, float("nan")] + [1] * 9)
    with pytest.raises(ValueError, match="predicted clicks of pair 0 is -1"):
        ClickCalibration.fit([-1] + [1] * 11, [1] * 12)
    with pytest.raises(ValueError, match="12 predicted against 11 actual"):
        ClickCalibration.fit([1] * 12, [1] * 11)


def _scores(costs: dict[str, tuple[float, float]]) -> list[ImageScore]:
    return [ImageScore(image_id=k, method="expected_clicks", score=s, cost=c)
            for k, (s, c) in costs.items()]


def test_a_clicks_budget_counts_calibrated_clicks():
    calibration = ClickCalibration(slope=2.0, offset=5.0, pairs=MIN_PAIRS)
    scores = _scores({f"im{i}": (10.0 - i, 1.0 + i) for i in range(10)})
    raw = select_batch(scores, budget_clicks=30.0, strategy="top")
    calibrated = select_batch(scores, budget_clicks=30.0, strategy="top", calibration=calibration)
    # Raw: 1 + 2 + 3 + 4 + 5 + 6 = 21 fits, + 7 does not; calibrated 7 + 9 + 11 = 27.
    assert raw.image_ids[:6] == [f"im{i}" for i in range(6)] and raw.total_cost <= 30
    assert calibrated.image_ids == ["im0", "im1", "im2"] and calibrated.total_cost == 27.0
    assert [item.uncalibrated_cost for item in calibrated.items] == [1.0, 2.0, 3.0]
    assert [item.cost for item in calibrated.items] == [7.0, 9.0, 11.0]
    assert calibrated.calibration["slope"] == 2.0
    assert f"calibrated on {MIN_PAIRS} labeled images" in calibrated.message
    assert all(item.uncalibrated_cost is None for item in raw.items) and raw.calibration is None
    records = selection_records(calibrated)
    assert [(r["cost"], r["predicted_clicks"]) for r in records] == [(7.0, 1.0), (9.0, 2.0),
                                                                      (11.0, 3.0)]
    assert selection_records(raw)[0]["predicted_clicks"] == 1.0


def test_an_offset_changes_the_cost_aware_order():
    # Raw, the cheap image wins per click (1 / 1 against 3 / 4); once every image costs 10
    # clicks more, the informative one does (3 / 14 against 1 / 11).
    scores = _scores({"cheap": (1.0, 1.0), "informative": (3.0, 4.0)})
    raw = select_batch(scores, budget_images=1, strategy="top_per_click")
    calibration = ClickCalibration(slope=1.0, offset=10.0, pairs=MIN_PAIRS)
    calibrated = select_batch(scores, budget_images=1, strategy="top_per_click",
                              calibration=calibration)
    assert raw.image_ids == ["cheap"] and calibrated.image_ids == ["informative"]


def test_an_unfitted_calibration_says_so_in_the_message():
    calibration = ClickCalibration.fit([1.0], [4.0])
    selection = select_batch(_scores({"a": (1.0, 2.0), "b": (0.5, 1.0)}), budget_images=1,
                             strategy="top", calibration=calibration)
    assert selection.items[0].cost == 2.0 and selection.items[0].uncalibrated_cost is None
    assert "fewer than" in selection.message


def _feature_pairs(n: int, seed: int = 0):
    """n images whose clicks follow their persons and score deficit, not the prediction."""
    rng = np.random.default_rng(seed)
    features = [{name: float(rng.uniform(0, 4)) for name in FEATURES} for _ in range(n)]
    actual = [3 * f["shown_persons"] + 2 * f["score_deficit"] + 1 for f in features]
    predicted = [f["confidence_estimate"] for f in features]
    return predicted, actual, features


def test_fit_learns_the_clicks_from_the_features_when_there_are_enough_pairs():
    needed = PAIRS_PER_WEIGHT * (len(FEATURES) + 1)
    predicted, actual, features = _feature_pairs(needed)
    calibration = ClickCalibration.fit(predicted, actual, features)
    assert calibration.feature_pairs == needed and calibration.note == ""
    assert calibration.weights["shown_persons"] == pytest.approx(3.0)
    assert calibration.weights["score_deficit"] == pytest.approx(2.0)
    assert calibration.feature_offset == pytest.approx(1.0)
    assert all(w >= 0 for w in calibration.weights.values())
    assert calibration.mean_abs_error_after < 1e-6 < calibration.mean_abs_error_before
    assert calibration.rank_correlation_after > 0.99 > calibration.rank_correlation
    # An image with features is predicted from them; one without, from the affine fit.
    fresh = {name: 1.0 for name in FEATURES}
    np.testing.assert_allclose(calibration.clicks(np.array([2.0, 2.0]), [fresh, None]),
                               [6.0, 2 * calibration.slope + calibration.offset])
    assert calibration.clicks(2.0) == pytest.approx(2 * calibration.slope + calibration.offset)


def test_too_few_feature_records_keep_the_affine_fit_and_say_so():
    predicted, actual, features = _feature_pairs(PAIRS_PER_WEIGHT * (len(FEATURES) + 1))
    few = features[:20] + [None] * (len(features) - 20)
    calibration = ClickCalibration.fit(predicted, actual, few)
    assert calibration.fitted and calibration.weights == {}
    assert "20 labeled images kept click features" in calibration.note
    partial = [{"shown_persons": 1.0}] * len(features)   # a record missing features
    assert ClickCalibration.fit(predicted, actual, partial).weights == {}
    with pytest.raises(ValueError, match="one per image"):
        ClickCalibration.fit(predicted, actual, features[:-1])
    features[3]["score_deficit"] = float("nan")
    with pytest.raises(ValueError, match="'score_deficit' is nan"):
        ClickCalibration.fit(predicted, actual, features)


def test_select_batch_prices_images_by_their_learned_features():
    predicted, actual, features = _feature_pairs(PAIRS_PER_WEIGHT * (len(FEATURES) + 1))
    calibration = ClickCalibration.fit(predicted, actual, features)
    crowded = {name: 0.0 for name in FEATURES} | {"shown_persons": 4.0}
    alone = {name: 0.0 for name in FEATURES} | {"shown_persons": 1.0}
    # The same prediction and score: the image with four persons costs 13 clicks, not 4.
    scores = [ImageScore(image_id=key, method="expected_clicks", score=1.0, cost=2.0,
                         cost_features=f) for key, f in (("crowded", crowded), ("alone", alone))]
    picked = select_batch(scores, budget_images=2, strategy="top_per_click",
                          calibration=calibration)
    assert picked.image_ids == ["alone", "crowded"]
    assert [item.cost for item in picked.items] == pytest.approx([4.0, 13.0])
    assert [item.uncalibrated_cost for item in picked.items] == [2.0, 2.0]
    assert picked.items[1].cost_features == crowded
    records = selection_records(picked)
    assert records[1]["cost_features"] == crowded and records[1]["predicted_clicks"] == 2.0


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _coco(keys: list[str]) -> dict:
    return {"images": [{"id": i, "file_name": k, "width": 8, "height": 8}
                       for i, k in enumerate(keys, 1)],
            "annotations": [], "categories": [{"id": 1, "name": "person"}]}


def test_history_pairs_each_labeled_image_of_earlier_rounds(tmp_path):
    datasets = Datasets(open_store(str(tmp_path / "store")))
    files = {}
    for i in range(5):
        (tmp_path / f"{i}.png").write_bytes(_png())
        files[f"pool/{i}.png"] = tmp_path / f"{i}.png"
    datasets.set_pool("people", datasets.ingest_images(files), expected_version=0)
    datasets.add_round("people", 0, _coco(["seed/a.png"]), expected_version=1,
                       annotations=[{"image": "seed/a.png", "clicks": 50, "seconds": 1.0}])
    # Round 1 was written before calibration existed: its raw prediction is in 'cost'.
    datasets.add_round("people", 1, _coco(["pool/0.png", "pool/1.png"]), expected_version=2,
                       selection=[{"image": "pool/0.png", "score": 1, "cost": 2.0},
                                  {"image": "pool/1.png", "score": 1, "cost": 3.0}],
                       annotations=[{"image": "pool/0.png", "clicks": 9, "seconds": 1.0},
                                    {"image": "pool/1.png", "clicks": 14, "seconds": 1.0}])
    datasets.add_round("people", 2, _coco(["pool/2.png", "pool/3.png"]), expected_version=3,
                       selection=[{"image": "pool/2.png", "score": 1, "cost": 40.0,
                                   "predicted_clicks": 4.0,
                                   "cost_features": {"shown_persons": 2.0}},
                                  {"image": "pool/3.png", "score": 1, "cost": 50.0,
                                   "predicted_clicks": 5.0}],
                       annotations=[{"image": "pool/2.png", "clicks": 21, "seconds": 1.0}])  # 3: skipped
    datasets.add_round("people", 3, _coco(["pool/4.png"]), expected_version=4,
                       selection=[{"image": "pool/4.png", "score": 1, "cost": 1.0}],
                       annotations=[{"image": "pool/4.png", "clicks": 7, "seconds": 1.0}])
    assert click_history(datasets, "people", 3) == ([2.0, 3.0, 4.0], [9.0, 14.0, 21.0],
                                                    [None, None, {"shown_persons": 2.0}])
    assert click_history(datasets, "people", 1) == ([], [], [])
    assert click_history(datasets, "nobody", 3) == ([], [], [])


def test_the_campaign_calibrates_only_when_it_reads_clicks(tmp_path):
    data = tiny_data(tmp_path / "data")
    datasets = Datasets(open_store(str(tmp_path / "store")))
    cost_aware = tiny_config(tmp_path, data, scorer="expected_clicks", strategy="top_per_click")
    assert round_calibration(datasets, cost_aware, 1).pairs == 0
    assert round_calibration(datasets, tiny_config(tmp_path, data), 1) is None
    off = tiny_config(tmp_path, data, scorer="expected_clicks", strategy="top_per_click",
                      calibrate_clicks=False)
    assert round_calibration(datasets, off, 1) is None
