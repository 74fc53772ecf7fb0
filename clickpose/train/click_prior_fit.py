"""Fit a checkpoint's click prior (clickpose.model.click_prior) on a labelled dataset folder.

The pose prior comes from every labelled person of the folder; the error model from the
model's own predictions on its first `max_images` images with persons, each labelled
person matched one to one (Hungarian on OKS, at least MIN_MATCH_OKS) to a prediction.
`clickpose train` fits it on its training data at the end of a run; `clickpose
fit-click-prior` fits it for any checkpoint.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from tqdm import tqdm

from clickpose.data.coco import ImageRecord, load_image, read_coco_dataset
from clickpose.model.click_prior import (
    ClickPrior,
    box_scale,
    error_covariance,
    pooled,
    pose_prior,
    uninformed,
)
from clickpose.train.defaults import (
    CLICK_PRIOR_IMAGES,
    CLICK_PRIOR_INHERITED_PERSONS,
    CLICK_PRIOR_UNINFORMED_PERSONS,
)
from selection.oks import match_persons, oks_matrix

# A prediction this far from a person (OKS) is another person's or none: no residual.
MIN_MATCH_OKS = 0.3


def offsets_in_box(records: list[ImageRecord]) -> np.ndarray:
    """(P, K, 2) each labelled person's keypoints minus its box centre, in box widths and
    heights; NaN where a keypoint is unlabelled. Persons with an empty box are left out."""
    rows = []
    for record in records:
        for box, keypoints in zip(record.boxes, record.keypoints):
            wh = box[2:] - box[:2]
            if (wh < 1).any() or not (keypoints[:, 2] > 0).any():
                continue
            u = (keypoints[:, :2] - (box[:2] + box[2:]) / 2) / wh
            u[keypoints[:, 2] == 0] = np.nan
            rows.append(u)
    num_keypoints = records[0].keypoints.shape[1] if records else 0
    return np.stack(rows) if rows else np.full((0, num_keypoints, 2), np.nan)


def residuals(model, record: ImageRecord, sigmas: np.ndarray) -> list[np.ndarray]:
    """The model's errors (K, 2) on each labelled person of one image it finds, in units of
    the predicted box's sqrt(area); NaN where unlabelled."""
    poses = model.predict(load_image(record.path))
    labelled = record.keypoints[:, :, 2] > 0
    if poses.num_persons == 0 or not labelled.any():
        return []
    oks = oks_matrix(record.keypoints[:, :, :2], poses.keypoints, record.areas[:, None],
                     sigmas, weights_a=labelled)
    out = []
    for person, prediction in match_persons(oks, MIN_MATCH_OKS):
        x0, y0, x1, y1 = poses.boxes[prediction]
        error = (poses.keypoints[prediction] - record.keypoints[person, :, :2]) \
            / box_scale(x1 - x0, y1 - y0)
        error[~labelled[person]] = np.nan
        out.append(error)
    return out


def fit_click_prior(model, data: str | Path, max_images: int = CLICK_PRIOR_IMAGES,
                    progress: bool = False, skip_bad: bool = False,
                    inherited: ClickPrior | None = None) -> ClickPrior:
    """The click prior of `model` (eval mode is set for the predictions) on folder `data`
    (`skip_bad`: leave out the images and annotations a check finds bad, as training did),
    regularized: see `regularized`."""
    return regularized(statistics_of(model, data, max_images, progress, skip_bad), inherited)


def regularized(fitted: ClickPrior, inherited: ClickPrior | None) -> ClickPrior:
    """`fitted` pooled with `inherited` when given (the prior of the checkpoint the model was
    fine-tuned from: a few labels adjust it rather than replace it), else with a prior that
    says nothing (a few labels narrow it only so far; the counts stay the fit's own)."""
    if inherited is not None:
        return pooled(fitted, inherited, CLICK_PRIOR_INHERITED_PERSONS)
    shrunk = pooled(fitted, uninformed(fitted, CLICK_PRIOR_UNINFORMED_PERSONS),
                    CLICK_PRIOR_UNINFORMED_PERSONS)
    return dataclasses.replace(shrunk, persons_labelled=fitted.persons_labelled,
                               persons_predicted=fitted.persons_predicted)


def statistics_of(model, data: str | Path, max_images: int = CLICK_PRIOR_IMAGES,
                  progress: bool = False, skip_bad: bool = False) -> ClickPrior:
    """The click prior of `data` alone: the labels' pose prior and `model`'s errors on its
    first `max_images` images with persons, nothing pooled."""
    index = read_coco_dataset(data, skip_bad=skip_bad)
    index.schema.require_same(model.schema, f"fit-click-prior: data {data}")
    with_persons = [r for r in index.records if (r.keypoints[:, :, 2] > 0).any()]
    if not with_persons:
        raise ValueError(f"{index.annotation_file}: no labelled person to fit a click prior "
                         "on; give the data the model was trained on")
    offsets = offsets_in_box(with_persons)
    pair_mean, pair_var, layout_mean, layout_var = pose_prior(offsets)
    sigmas = index.schema.sigmas_array
    was_training = model.training
    model.eval()
    errors: list[np.ndarray] = []
    try:
        for record in tqdm(with_persons[:max_images], desc="click prior", unit="img",
                           disable=not progress):
            errors += residuals(model, record, sigmas)
    finally:
        model.train(was_training)
    num_keypoints = index.schema.num_keypoints
    stacked = np.stack(errors) if errors else np.full((0, num_keypoints, 2), np.nan)
    return ClickPrior(pair_mean=pair_mean, pair_var=pair_var, layout_mean=layout_mean,
                      layout_var=layout_var, error_cov=error_covariance(stacked),
                      persons_labelled=len(offsets), persons_predicted=len(errors))
