"""What one click says about the rest of its person: statistics fitted once per checkpoint.

The keypoint decoder barely moves a person's other keypoints when one is clicked (the
README's measured figures), yet a click says two things about them that simple statistics
of the training images capture:

- The pose prior: where each keypoint type lies relative to every other one and to the
  person's box (mean and variance per pair, in units of the box's width and height, from
  the labels). A clicked wrist bounds where its elbow can be; a keypoint far outside those
  bounds was put on the wrong limb and is looked for again in the heatmaps.
- The error model: the covariance of the decoder's residual errors across the keypoints of
  one person (in units of the predicted box's sqrt(area), from the model's own predictions
  on its training images). A click measures the clicked keypoint's error exactly; the
  conditional mean of the others' errors given it moves them (the eyes follow the nose, a
  side follows its shoulder).

`clickpose.train.click_prior_fit` fits them; config.json of the checkpoint stores them
('click_prior'); `clickpose.model.click_propagation` applies them in a session's decode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Residuals larger than this (x the box's sqrt(area)) are gross errors (another limb, the
# other side): the Gaussian error model neither learns from them nor propagates them.
MAX_PROPAGATED_ERROR = 0.3
# Weight of the diagonal in the fitted covariance (shrinkage toward independent keypoints).
COVARIANCE_SHRINK = 0.3
# Fewer pairs than this and a statistic falls back to its uninformative default.
MIN_PAIRS = 20
# Defaults where the data says nothing: a pair offset of 0 with a variance of half a box.
UNINFORMED_VARIANCE = 0.25
FORMAT_VERSION = 1


class ClickPriorError(ValueError):
    """A stored click prior that does not fit the checkpoint's schema."""


@dataclass
class ClickPrior:
    """pair_mean / pair_var (K, K, 2): keypoint j minus keypoint k, in box widths/heights;
    layout_mean / layout_var (K, 2): keypoint minus box centre, same units;
    error_cov (2K, 2K): residuals (x0, y0, x1, y1, ...) in units of the box's sqrt(area);
    persons_labelled / persons_predicted: how many persons each part was fitted on."""

    pair_mean: Tensor
    pair_var: Tensor
    layout_mean: Tensor
    layout_var: Tensor
    error_cov: Tensor
    persons_labelled: int
    persons_predicted: int
    max_error: float = MAX_PROPAGATED_ERROR

    @property
    def num_keypoints(self) -> int:
        return self.layout_mean.shape[0]

    def to_json(self) -> dict:
        def numbers(t: Tensor) -> list:
            return np.round(t.double().numpy(), 7).tolist()

        return {"version": FORMAT_VERSION, "num_keypoints": self.num_keypoints,
                "persons_labelled": self.persons_labelled,
                "persons_predicted": self.persons_predicted, "max_error": self.max_error,
                "pair_mean": numbers(self.pair_mean), "pair_var": numbers(self.pair_var),
                "layout_mean": numbers(self.layout_mean),
                "layout_var": numbers(self.layout_var), "error_cov": numbers(self.error_cov)}

    @classmethod
    def from_json(cls, data: dict, num_keypoints: int, where: str,
                  field: str = "click_prior") -> ClickPrior:
        """The stored prior, read from `field` of file `where`; ClickPriorError names both
        and the part that is wrong."""
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise ClickPriorError(f"{where}: '{field}' is not a version-{FORMAT_VERSION} "
                                  "click prior; refit it with `clickpose fit-click-prior`")
        k = num_keypoints
        shapes = {"pair_mean": (k, k, 2), "pair_var": (k, k, 2), "layout_mean": (k, 2),
                  "layout_var": (k, 2), "error_cov": (2 * k, 2 * k)}
        tensors = {}
        for name, shape in shapes.items():
            try:
                value = torch.tensor(data[name], dtype=torch.float64)
            except (KeyError, TypeError, ValueError):
                value = None
            if value is None or tuple(value.shape) != shape or not torch.isfinite(value).all():
                raise ClickPriorError(
                    f"{where}: '{field}.{name}' must be finite numbers of shape {shape} for "
                    f"the schema's {k} keypoints; refit it with `clickpose fit-click-prior`")
            tensors[name] = value
        return cls(**tensors, persons_labelled=int(data.get("persons_labelled", 0)),
                   persons_predicted=int(data.get("persons_predicted", 0)),
                   max_error=float(data.get("max_error", MAX_PROPAGATED_ERROR)))


def pooled(fitted: ClickPrior, inherited: ClickPrior, inherited_persons: int) -> ClickPrior:
    """`fitted` and `inherited` taken as two samples of persons: each mean weighted by the
    persons behind it (the inherited prior's counting at most `inherited_persons`), each
    variance that of the mixture (within plus between), the error covariances weighted by
    the predicted persons the same way."""
    if fitted.num_keypoints != inherited.num_keypoints:
        raise ClickPriorError(f"cannot pool a {fitted.num_keypoints}-keypoint click prior with "
                              f"a {inherited.num_keypoints}-keypoint one")

    def share(new: int, old: int) -> tuple[float, int]:
        old = min(old, inherited_persons)
        return (new / (new + old) if new + old else 1.0), old

    w, old_labelled = share(fitted.persons_labelled, inherited.persons_labelled)
    we, old_predicted = share(fitted.persons_predicted, inherited.persons_predicted)

    def mean(a: Tensor, b: Tensor) -> Tensor:
        return w * a + (1 - w) * b

    def variance(va: Tensor, vb: Tensor, ma: Tensor, mb: Tensor) -> Tensor:
        return w * va + (1 - w) * vb + w * (1 - w) * (ma - mb) ** 2

    return ClickPrior(
        pair_mean=mean(fitted.pair_mean, inherited.pair_mean),
        pair_var=variance(fitted.pair_var, inherited.pair_var, fitted.pair_mean,
                          inherited.pair_mean),
        layout_mean=mean(fitted.layout_mean, inherited.layout_mean),
        layout_var=variance(fitted.layout_var, inherited.layout_var, fitted.layout_mean,
                            inherited.layout_mean),
        error_cov=we * fitted.error_cov + (1 - we) * inherited.error_cov,
        persons_labelled=fitted.persons_labelled + old_labelled,
        persons_predicted=fitted.persons_predicted + old_predicted,
        max_error=fitted.max_error)


def uninformed(like: ClickPrior, persons: int) -> ClickPrior:
    """A prior that says nothing, standing for `persons` persons: pair offsets and layout 0
    with UNINFORMED_VARIANCE, and `like`'s error variances without their correlations (a
    click then moves no other keypoint)."""
    pairs, layout = (like.num_keypoints, like.num_keypoints, 2), (like.num_keypoints, 2)
    return ClickPrior(pair_mean=torch.zeros(pairs, dtype=torch.float64),
                      pair_var=torch.full(pairs, UNINFORMED_VARIANCE, dtype=torch.float64),
                      layout_mean=torch.zeros(layout, dtype=torch.float64),
                      layout_var=torch.full(layout, UNINFORMED_VARIANCE, dtype=torch.float64),
                      error_cov=torch.diag(torch.diagonal(like.error_cov)),
                      persons_labelled=persons, persons_predicted=persons,
                      max_error=like.max_error)


def pose_prior(offsets_in_box: np.ndarray) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Labelled persons (P, K, 2), each keypoint minus its box centre in box widths and
    heights, NaN where unlabelled -> pair_mean, pair_var (K, K, 2), layout_mean, layout_var
    (K, 2). Pairs seen fewer than MIN_PAIRS times get mean 0 and UNINFORMED_VARIANCE."""
    u = np.asarray(offsets_in_box, dtype=np.float64)
    pair_mean, pair_var = _nan_moments(u[:, :, None] - u[:, None, :])
    layout_mean, layout_var = _nan_moments(u)
    return (torch.from_numpy(pair_mean), torch.from_numpy(pair_var),
            torch.from_numpy(layout_mean), torch.from_numpy(layout_var))


def _nan_moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance over axis 0, ignoring NaN; uninformed where too few values."""
    seen = np.isfinite(values)
    count = seen.sum(0)
    filled = np.where(seen, values, 0.0)
    mean = filled.sum(0) / np.maximum(count, 1)
    var = (np.where(seen, values - mean, 0.0) ** 2).sum(0) / np.maximum(count - 1, 1)
    few = count < MIN_PAIRS
    mean[few], var[few] = 0.0, UNINFORMED_VARIANCE
    # A keypoint with itself (the pair diagonal) would claim zero spread: harmless, as a
    # clicked keypoint is never moved, but keep every variance positive for the solver.
    return mean, np.maximum(var, 1e-6)


def error_covariance(residuals: np.ndarray, max_error: float = MAX_PROPAGATED_ERROR,
                     shrink: float = COVARIANCE_SHRINK) -> Tensor:
    """Residuals (P, K, 2) of matched predictions in units of the box's sqrt(area), NaN where
    unlabelled -> (2K, 2K) covariance over the pairs each entry has, gross errors
    (> max_error) left out, shrunk toward its diagonal and made positive definite."""
    r = np.asarray(residuals, dtype=np.float64).copy()
    r[np.linalg.norm(r, axis=-1) > max_error] = np.nan
    x = r.reshape(len(r), 2 * r.shape[1])                        # (P, 2K): x0, y0, x1, ...
    seen = np.isfinite(x)
    mean = np.where(seen, x, 0.0).sum(0) / np.maximum(seen.sum(0), 1)
    centred = np.where(seen, x - mean, 0.0)
    pairs = seen.T.astype(np.float64) @ seen.astype(np.float64)
    cov = centred.T @ centred / np.maximum(pairs - 1, 1)
    cov[pairs < MIN_PAIRS] = 0.0
    diagonal = np.diag(cov).copy()
    known = diagonal > 0
    fallback = float(diagonal[known].mean()) if known.any() else max_error ** 2 / 4
    diagonal[~known] = fallback
    cov = (1.0 - shrink) * cov + shrink * np.diag(diagonal)
    np.fill_diagonal(cov, diagonal)
    eigenvalues, vectors = np.linalg.eigh((cov + cov.T) / 2)
    floor = max(1e-8, 1e-6 * float(eigenvalues.max(initial=0.0)))
    cov = (vectors * np.clip(eigenvalues, floor, None)) @ vectors.T
    return torch.from_numpy(cov)


def box_scale(width: float, height: float) -> float:
    """The unit of the error model: sqrt of the box's area (at least one pixel)."""
    return math.sqrt(max(width * height, 1.0))
