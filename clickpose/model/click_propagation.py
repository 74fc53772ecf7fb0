"""A click moves the rest of its person: the click prior (clickpose.model.click_prior)
applied around the keypoint decoder, for the persons that have clicks.

Before the decode, `reseeded_start`: each unclicked keypoint whose starting place is far
less likely than the best place the heatmaps offer, under the pose prior conditioned on the
clicks, starts from that place instead (a wrist on the other arm, once the elbow is
clicked). After it, `propagated`: the decoder's unclicked keypoints move by the conditional
mean of their errors given the clicked keypoints' errors (the click minus where the person
started). Clicked keypoints stay exactly where they were clicked; persons without clicks
are not touched.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from clickpose.model.click_prior import ClickPrior, box_scale
from clickpose.model.encoder import valid_cells
from clickpose.model.keypoint_heatmap import cell_centres

# A keypoint starts again from the heatmaps when their best place beats its own by this
# much log-probability under the conditioned prior.
RESEED_MARGIN = 2.0
# The prior's variances are those of labelled poses; widened this much, a click narrows
# where a keypoint may be without overruling the heatmaps (chosen on the synthetic bench's
# tuning images, docs/measurements.md).
RESEED_WIDEN = 4.0


def conditioned_place(prior: ClickPrior, box: Tensor, start: Tensor, clicked: Tensor
                      ) -> tuple[Tensor, Tensor]:
    """Mean and variance (K, 2), normalized image coordinates, of each keypoint given the
    clicked ones and the box (cxcywh normalized): the product of the Gaussians that each
    clicked keypoint's pair statistics and the box layout put on it."""
    wh = box[2:].double().clamp(min=1e-3)
    start = start.double()
    means = [box[:2].double()[None] + prior.layout_mean * wh]
    variances = [prior.layout_var * wh ** 2]
    for k in clicked.nonzero()[:, 0].tolist():
        means.append(start[k][None] + prior.pair_mean[:, k] * wh)
        variances.append(prior.pair_var[:, k] * wh ** 2)
    precision = torch.stack([1.0 / (v * RESEED_WIDEN) for v in variances])   # (T, K, 2)
    variance = 1.0 / precision.sum(0)
    mean = (torch.stack(means) * precision).sum(0) * variance
    return mean, variance


def reseeded_start(prior: ClickPrior, heatmap: Tensor, offsets: Tensor | None, mask: Tensor,
                   box: Tensor, start: Tensor, clicked: Tensor) -> Tensor:
    """One person's starting pose (K, 2) normalized, with the clicks written in, after
    reseeding. heatmap (K, h, w) logits, offsets (K, 2, h, w) in cells or None, mask (h, w)
    True on padding, box (4,) cxcywh normalized, clicked (K,) bool."""
    mean, variance = conditioned_place(prior, box, start, clicked)
    xs, ys = (c[0].double() for c in cell_centres(mask[None]))
    log_prior = (-0.5 * (xs[None, None, :] - mean[:, None, None, 0]) ** 2
                 / variance[:, None, None, 0]
                 - 0.5 * (ys[None, :, None] - mean[:, None, None, 1]) ** 2
                 / variance[:, None, None, 1])                                   # (K, h, w)
    evidence = F.logsigmoid(heatmap.double()).masked_fill(mask[None], float("-inf"))
    posterior = (evidence + log_prior).flatten(1)                              # (K, h*w)
    best_score, best = posterior.max(1)
    w = heatmap.shape[-1]
    row, col = best // w, best % w
    valid_w, valid_h = (v[0].double() for v in valid_cells(mask[None]))
    place = torch.stack([xs[col], ys[row]], -1)
    if offsets is not None:
        keypoints = torch.arange(len(best), device=best.device)
        place = place + torch.stack([offsets[keypoints, 0, row, col] / valid_w,
                                     offsets[keypoints, 1, row, col] / valid_h], -1).double()
    # The start's own score: the cell it lies in.
    own_col = (start[:, 0].double() * valid_w).floor().clamp(0, valid_w - 1).long()
    own_row = (start[:, 1].double() * valid_h).floor().clamp(0, valid_h - 1).long()
    own_score = posterior.view(-1, *heatmap.shape[-2:])[
        torch.arange(len(best), device=best.device), own_row, own_col]
    move = (best_score - own_score > RESEED_MARGIN) & ~clicked
    return torch.where(move[:, None], place.clamp(0.0, 1.0).to(start.dtype), start)


def propagated(prior: ClickPrior, decoded: Tensor, start: Tensor,
               clicks: dict[int, tuple[float, float]], box_xyxy: Tensor) -> Tensor:
    """One person's decoded keypoints (K, 2) in pixels, the unclicked ones moved by the
    conditional mean of their errors given the clicked ones' errors (start (K, 2) pixels:
    where the person started; clicks: keypoint -> pixel (x, y); box_xyxy (4,) pixels).
    Clicks that corrected a gross error (over prior.max_error) say nothing about the
    others' small errors and are left out."""
    scale = box_scale(float(box_xyxy[2] - box_xyxy[0]), float(box_xyxy[3] - box_xyxy[1]))
    informative, errors = [], []
    for k, (x, y) in sorted(clicks.items()):
        error = (start[k].double() - torch.tensor([x, y], dtype=torch.float64)) / scale
        if float(error.norm()) <= prior.max_error:
            informative += [2 * k, 2 * k + 1]
            errors.append(error)
    if not informative:
        return decoded
    num_keypoints = decoded.shape[0]
    rest = [d for j in range(num_keypoints) if j not in clicks for d in (2 * j, 2 * j + 1)]
    if not rest:
        return decoded
    cov = prior.error_cov
    given = torch.cat(errors)
    expected = cov[rest][:, informative] @ torch.linalg.solve(
        cov[informative][:, informative], given)                                 # (len(rest),)
    moved = decoded.clone().double().flatten()
    moved[rest] -= expected * scale
    return moved.view(num_keypoints, 2).to(decoded.dtype)
