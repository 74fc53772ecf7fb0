"""Predicted clicks calibrated on the clicks that labeling actually cost.

`expected_clicks` reads a model's confidences, and a model is overconfident about its own
poses: in the active-learning bench's cost-aware rounds from the packaged start model, the
chosen images were predicted at 4.0-4.5 clicks each and took 17.7-23.3 to label, 4.4-5.2
times as many in every round (bench/results/active_learning_art256_start_model.jsonl). A
budget in those clicks is then a budget in a unit nobody pays. Every labeled image of a
campaign leaves a pair (clicks predicted when it was chosen, clicks it took); an affine fit
of one on the other (non-negative slope and offset, scipy's nnls: a click is never
predicted to be negative, and an image with no predicted click still costs a look) turns
the next round's predictions into clicks. Until there are `MIN_PAIRS` pairs, the
predictions stay as they are and the calibration says so.

The prediction alone ranks images by their clicks poorly (Spearman 0.11-0.59 in the bench's
mixed-pool campaign): when the labeled images also kept their click features
(selection.click_features), and there are `PAIRS_PER_WEIGHT` pairs for each weight, the
clicks are fitted on all of them instead (nnls again, one non-negative weight each plus the
offset), and an image with features is predicted from them; one without (a record from
before) from the affine fit.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, Field
from scipy.optimize import nnls
from scipy.stats import spearmanr

from selection.click_features import FEATURES

# Fewer pairs than this fit noise, not a slope: a round is tens of images.
MIN_PAIRS = 10
# Pairs for each fitted number before the features are fitted (7 numbers: 70 pairs).
PAIRS_PER_WEIGHT = 10

Features = Mapping[str, float]


class ClickCalibration(BaseModel):
    """clicks = slope x predicted + offset, fitted on `pairs` labeled images; with `weights`,
    clicks = sum of weights[f] x features[f] + feature_offset for an image with features."""
    slope: float = 1.0
    offset: float = 0.0
    pairs: int = 0
    weights: dict[str, float] = Field(default_factory=dict)  # per feature; empty: affine
    feature_offset: float = 0.0
    feature_pairs: int = 0                       # the pairs the weights were fitted on
    mean_abs_error_before: float | None = None   # of the raw predictions, in clicks per image
    mean_abs_error_after: float | None = None    # of the calibrated ones, same images
    rank_correlation: float | None = None        # Spearman, predicted against actual clicks
    rank_correlation_after: float | None = None  # Spearman, calibrated against actual clicks
    note: str = ""

    @property
    def fitted(self) -> bool:
        return self.pairs >= MIN_PAIRS

    @classmethod
    def fit(cls, predicted: Sequence[float], actual: Sequence[float],
            features: Sequence[Features | None] | None = None) -> ClickCalibration:
        """From each labeled image's predicted and actual clicks (same order), and its click
        features where it kept them (None or {} where not)."""
        predicted = _clicks(predicted, "predicted")
        actual = _clicks(actual, "actual")
        if len(predicted) != len(actual):
            raise ValueError(f"click calibration: {len(predicted)} predicted against "
                             f"{len(actual)} actual click counts; give one pair per image")
        if features is not None and len(features) != len(predicted):
            raise ValueError(f"click calibration: {len(features)} feature records against "
                             f"{len(predicted)} pairs; give one per image (None where none)")
        if len(predicted) < MIN_PAIRS:
            return cls(pairs=len(predicted), note=(
                f"{len(predicted)} labeled images with predicted clicks, fewer than "
                f"{MIN_PAIRS}: predicted clicks are used uncalibrated"))
        (slope, offset), _ = nnls(np.stack([predicted, np.ones_like(predicted)], 1), actual)
        calibration = cls(slope=float(slope), offset=float(offset), pairs=len(predicted),
                          mean_abs_error_before=float(np.abs(predicted - actual).mean()),
                          rank_correlation=_spearman(predicted, actual))
        calibration._fit_features(features or [None] * len(predicted), actual)
        calibrated = calibration.clicks(predicted, features)
        calibration.mean_abs_error_after = float(np.abs(calibrated - actual).mean())
        calibration.rank_correlation_after = _spearman(calibrated, actual)
        return calibration

    def _fit_features(self, features: Sequence[Features | None], actual: np.ndarray) -> None:
        rows = [i for i, f in enumerate(features) if _complete(f)]
        needed = PAIRS_PER_WEIGHT * (len(FEATURES) + 1)
        if len(rows) < needed:
            self.note = (f"{len(rows)} labeled images kept click features, fewer than "
                         f"{needed}: the affine fit of the predicted clicks is used")
            return
        x = np.array([[_feature(features[i], name) for name in FEATURES] + [1.0]
                      for i in rows])
        solution, _ = nnls(x, actual[rows])
        self.weights = {name: float(w) for name, w in zip(FEATURES, solution[:-1])}
        self.feature_offset = float(solution[-1])
        self.feature_pairs = len(rows)

    def clicks(self, predicted, features: Sequence[Features | None] | None = None):
        """Calibrated clicks of a predicted count (a number or an array of them), from each
        image's click features where the weights are fitted and the image has them."""
        if not self.fitted:
            return predicted
        affine = self.slope * predicted + self.offset
        if not self.weights or features is None:
            return affine
        affine = np.atleast_1d(np.asarray(affine, dtype=np.float64)).copy()
        for i, f in enumerate(features):
            if _complete(f):
                affine[i] = self.feature_offset + sum(w * _feature(f, name)
                                                      for name, w in self.weights.items())
        return affine if np.ndim(predicted) else float(affine[0])


def _complete(features: Features | None) -> bool:
    return bool(features) and all(name in features for name in FEATURES)


def _feature(features: Features, name: str) -> float:
    value = float(features[name])
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"click calibration: click feature '{name}' is {value}; click "
                         "features are finite numbers >= 0")
    return value


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    return float(spearmanr(a, b)[0]) if np.ptp(a) > 0 and np.ptp(b) > 0 else None


def _clicks(values: Sequence[float], which: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    bad = [i for i, v in enumerate(array) if not (math.isfinite(v) and v >= 0)]
    if bad:
        raise ValueError(f"click calibration: {which} clicks of pair {bad[0]} is "
                         f"{array[bad[0]]}; click counts are finite numbers >= 0")
    return array
