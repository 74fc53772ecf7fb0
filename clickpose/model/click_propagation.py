"""A click moves the rest of its person: the click prior (clickpose.model.click_prior)
applied around the keypoint decoder, for the persons that have clicks.

Before the decode, `reseeded_starts`: each unclicked keypoint whose starting place is far
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


def conditioned_places(prior: ClickPrior, boxes: Tensor, starts: Tensor, clicked: Tensor
                       ) -> tuple[Tensor, Tensor]:
    """Mean and variance (P, K, 2), normalized image coordinates, of each person's keypoints
    given its clicked ones and its box: the product of the Gaussians that each clicked
    keypoint's pair statistics and the box layout put on a keypoint.
    boxes (P, 4) cxcywh normalized; starts (P, K, 2) with the clicks written in; clicked
    (P, K) bool."""
    def like_boxes(t: Tensor) -> Tensor:  # the prior is kept in float64 on the CPU
        return t.to(boxes.device, torch.float32)

    wh = like_boxes(boxes[:, None, 2:]).clamp(min=1e-3)                    # (P, 1, 2)
    layout_precision = 1.0 / (like_boxes(prior.layout_var) * wh ** 2 * RESEED_WIDEN)
    layout_mean = like_boxes(boxes[:, None, :2]) + like_boxes(prior.layout_mean) * wh
    # Pair terms for every (keypoint j, clicked keypoint k), zero weight where k is not clicked.
    wh = wh[:, :, None]                                                    # (P, 1, 1, 2)
    pair_mean = like_boxes(starts[:, None]) + like_boxes(prior.pair_mean) * wh  # (P, Kj, Kk, 2)
    pair_precision = (like_boxes(clicked[:, None, :, None])
                      / (like_boxes(prior.pair_var) * wh ** 2 * RESEED_WIDEN))
    precision = layout_precision + pair_precision.sum(2)
    variance = 1.0 / precision
    mean = (layout_mean * layout_precision + (pair_mean * pair_precision).sum(2)) * variance
    return mean, variance


def heatmap_evidence(heatmap: Tensor, mask: Tensor) -> Tensor:
    """(K, h, w) log-probability of each keypoint type in each cell, -inf on padding, from
    the heatmap logits (K, h, w) and the mask (h, w): an image's, the same for every click."""
    return F.logsigmoid(heatmap.float()).masked_fill(mask[None], float("-inf"))


def reseeded_starts(prior: ClickPrior, evidence: Tensor, offsets: Tensor | None, mask: Tensor,
                    boxes: Tensor, starts: Tensor, clicked: Tensor) -> Tensor:
    """Persons' starting poses (P, K, 2) normalized, with the clicks written in, after
    reseeding. evidence (K, h, w) from heatmap_evidence, offsets (K, 2, h, w) in cells or
    None, mask (h, w) True on padding, boxes (P, 4) cxcywh normalized, clicked (P, K) bool."""
    mean, variance = conditioned_places(prior, boxes, starts, clicked)
    xs, ys = (c[0] for c in cell_centres(mask[None]))
    log_x = -0.5 * (xs - mean[..., :1]) ** 2 / variance[..., :1]           # (P, K, w)
    log_y = -0.5 * (ys - mean[..., 1:]) ** 2 / variance[..., 1:]           # (P, K, h)
    posterior = (evidence + log_y[..., :, None] + log_x[..., None, :]).flatten(2)  # (P, K, hw)
    best_score, best = posterior.max(-1)
    w = evidence.shape[-1]
    row, col = best // w, best % w
    place = torch.stack([xs[col], ys[row]], -1)
    valid_w, valid_h = (v[0] for v in valid_cells(mask[None]))
    if offsets is not None:
        types = torch.arange(evidence.shape[0], device=best.device).expand_as(best)
        place = place + torch.stack([offsets[types, 0, row, col] / valid_w,
                                     offsets[types, 1, row, col] / valid_h], -1)
    # The start's own score: the cell it lies in.
    own_col = (starts[..., 0] * valid_w).floor().clamp(0, valid_w - 1).long()
    own_row = (starts[..., 1] * valid_h).floor().clamp(0, valid_h - 1).long()
    own_score = posterior.gather(-1, (own_row * w + own_col)[..., None])[..., 0]
    move = (best_score - own_score > RESEED_MARGIN) & ~clicked
    return torch.where(move[..., None], place.clamp(0.0, 1.0).to(starts.dtype), starts)


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
