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
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel
from scipy.optimize import nnls
from scipy.stats import spearmanr

# Fewer pairs than this fit noise, not a slope: a round is tens of images.
MIN_PAIRS = 10


class ClickCalibration(BaseModel):
    """clicks = slope x predicted + offset, fitted on `pairs` labeled images."""
    slope: float = 1.0
    offset: float = 0.0
    pairs: int = 0
    mean_abs_error_before: float | None = None   # of the raw predictions, in clicks per image
    mean_abs_error_after: float | None = None    # of the calibrated ones, same images
    rank_correlation: float | None = None        # Spearman, predicted against actual clicks
    note: str = ""

    @property
    def fitted(self) -> bool:
        return self.pairs >= MIN_PAIRS

    @classmethod
    def fit(cls, predicted: Sequence[float], actual: Sequence[float]) -> ClickCalibration:
        """From each labeled image's predicted and actual clicks (same order)."""
        predicted = _clicks(predicted, "predicted")
        actual = _clicks(actual, "actual")
        if len(predicted) != len(actual):
            raise ValueError(f"click calibration: {len(predicted)} predicted against "
                             f"{len(actual)} actual click counts; give one pair per image")
        if len(predicted) < MIN_PAIRS:
            return cls(pairs=len(predicted), note=(
                f"{len(predicted)} labeled images with predicted clicks, fewer than "
                f"{MIN_PAIRS}: predicted clicks are used uncalibrated"))
        (slope, offset), _ = nnls(np.stack([predicted, np.ones_like(predicted)], 1), actual)
        calibrated = slope * predicted + offset
        varies = np.ptp(predicted) > 0 and np.ptp(actual) > 0
        return cls(slope=float(slope), offset=float(offset), pairs=len(predicted),
                   mean_abs_error_before=float(np.abs(predicted - actual).mean()),
                   mean_abs_error_after=float(np.abs(calibrated - actual).mean()),
                   rank_correlation=float(spearmanr(predicted, actual)[0]) if varies else None)

    def clicks(self, predicted):
        """Calibrated clicks of a predicted count (a number or an array of them)."""
        return self.slope * predicted + self.offset if self.fitted else predicted


def _clicks(values: Sequence[float], which: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    bad = [i for i, v in enumerate(array) if not (math.isfinite(v) and v >= 0)]
    if bad:
        raise ValueError(f"click calibration: {which} clicks of pair {bad[0]} is "
                         f"{array[bad[0]]}; click counts are finite numbers >= 0")
    return array
