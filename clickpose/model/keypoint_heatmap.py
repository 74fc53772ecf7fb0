"""Keypoint heatmaps on the finest encoder level: where each person's keypoints start.

A DETR-style decoder that starts every person from one learned average pose needs many
epochs before its queries move keypoints far from it. A dense per-keypoint-type heatmap
(a small convolutional head on the stride-8 encoder tokens, trained with CornerNet's
focal loss on Gaussian targets) learns from every labelled keypoint of every image at
once, so it localises keypoints after a few hundred steps. Each person's starting pose is
then the soft-argmax of every type's heatmap under a Gaussian prior centred on that
type's learned place in the person's box: the keypoint of this person, not of its
neighbour. The keypoint decoder refines from there, as before; at inference its last
layer's keypoints are then drawn to the heatmap evidence close by (`heatmap_snap`: the
same soft-argmax under a narrower prior centred on the decoder's keypoint), which the
decoder's regression heads learn only late.

With offsets (`heatmap_offsets`, CenterNet's), every cell near a keypoint also says where
in the cell that keypoint lies, so each cell votes for a point finer than the grid: a
stride-8 cell is wider than the OKS tolerance of a small person's eye or nose.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clickpose.model.encoder import valid_cells

# logit(0.1): few cells are keypoints (the CenterNet initialisation).
HEATMAP_PRIOR_LOGIT = -2.19


class KeypointHeatmapHead(nn.Module):
    """(B, D, h, w) finest-level encoder tokens -> (B, K, h, w) keypoint logits, and with
    `offsets` (B, K, 2, h, w) sub-cell offsets (x, y) in cells from each cell's centre.

    With `fine_channels`, a finer backbone map (B, C, H, W) joins them, FPN-style: the
    tokens' features are upsampled to it and added to its 1x1 projection, and the logits
    come out at (H, W). The 3x3 convolutions stay on the coarse grid, where they are cheap.

    `dilations`: one 3x3 convolution (GroupNorm, ReLU) per entry, with that dilation: more
    than one widens what each cell sees of the person around it."""

    def __init__(self, dim: int, num_keypoints: int, fine_channels: int | None = None,
                 offsets: bool = False, dilations: tuple[int, ...] = (1,)):
        super().__init__()
        blocks = [layer for d in dilations for layer in (
            nn.Conv2d(dim, dim, 3, padding=d, dilation=d), nn.GroupNorm(32, dim),
            nn.ReLU(inplace=True))]
        self.net = nn.Sequential(*blocks, nn.Conv2d(dim, num_keypoints, 1))
        nn.init.constant_(self.net[-1].bias, HEATMAP_PRIOR_LOGIT)
        self.lateral = None if fine_channels is None else nn.Sequential(
            nn.Conv2d(fine_channels, dim, 1), nn.GroupNorm(32, dim))
        self.offsets = nn.Conv2d(dim, 2 * num_keypoints, 1) if offsets else None
        if self.offsets is not None:  # start at the cell centres, as without offsets
            nn.init.zeros_(self.offsets.weight)
            nn.init.zeros_(self.offsets.bias)

    def forward(self, tokens: Tensor, fine: Tensor | None = None
                ) -> tuple[Tensor, Tensor | None]:
        features = self.net[:-1](tokens)
        if self.lateral is not None:
            features = F.interpolate(features, size=fine.shape[-2:], mode="bilinear",
                                     align_corners=False)
            features = torch.relu(features + self.lateral(fine))
        logits = self.net[-1](features)
        if self.offsets is None:
            return logits, None
        batch, num_k, h, w = logits.shape
        return logits, self.offsets(features).view(batch, num_k, 2, h, w)


def cell_centres(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Cell centres normalized by each image's unpadded size: xs (B, w), ys (B, h)."""
    _, h, w = mask.shape
    valid_w, valid_h = valid_cells(mask)
    xs = (torch.arange(w, device=mask.device, dtype=torch.float32) + 0.5)[None] / valid_w[:, None]
    ys = (torch.arange(h, device=mask.device, dtype=torch.float32) + 0.5)[None] / valid_h[:, None]
    return xs, ys


def heatmap_start(logits: Tensor, mask: Tensor, boxes: Tensor, layout_xy: Tensor,
                  prior_sigma: float, offsets: Tensor | None = None) -> Tensor:
    """Starting keypoints of each person from the heatmaps.

    logits (B, K, h, w); mask (B, h, w) True on padding; boxes (B, N, 4) cxcywh and
    layout_xy (B, N, K, 2) each type's usual place in the box, both normalized.
    Returns (B, N, K, 2) normalized: the expected position under
    softmax(heatmap logit + log Gaussian prior around layout_xy, `prior_sigma` x the box)
    of each cell's centre, moved by its `offsets` (B, K, 2, h, w) in cells when given.
    """
    xs, ys = cell_centres(mask)
    sigma = (boxes[..., None, 2:] * prior_sigma).clamp(min=1e-3)          # (B, N, 1, 2)
    prior_x = -0.5 * ((xs[:, None, None, :] - layout_xy[..., :1]) / sigma[..., :1]) ** 2
    prior_y = -0.5 * ((ys[:, None, None, :] - layout_xy[..., 1:]) / sigma[..., 1:]) ** 2
    # The softmax factorises: exp(logit) is one (K, h, w) map per image and the prior an
    # outer product of a row and a column, so every sum is a matrix product and no
    # (B, N, K, h, w) tensor is made (it doubled a click's cost on large maps). Each factor
    # is scaled by its own maximum, as a softmax subtracts the maximum.
    logits = logits.float().masked_fill(mask[:, None], float("-inf"))
    evidence = (logits - logits.flatten(2).amax(-1)[..., None, None]).exp()  # (B, K, h, w)
    weight_x = (prior_x - prior_x.amax(-1, keepdim=True)).exp()           # (B, N, K, w)
    weight_y = (prior_y - prior_y.amax(-1, keepdim=True)).exp()           # (B, N, K, h)
    per_x = torch.einsum("bnky,bkyx->bnkx", weight_y, evidence) * weight_x
    per_y = torch.einsum("bnkx,bkyx->bnky", weight_x, evidence) * weight_y
    total = per_x.sum(-1)                                                 # (B, N, K)
    x = (per_x * xs[:, None, None, :]).sum(-1)
    y = (per_y * ys[:, None, None, :]).sum(-1)
    if offsets is not None:  # offsets are in cells; positions are fractions of the image
        valid_w, valid_h = valid_cells(mask)
        x = x + _offset_votes(weight_y, weight_x, evidence * offsets[:, :, 0].float(),
                              "bnky,bkyx->bnkx") / valid_w[:, None, None]
        y = y + _offset_votes(weight_x, weight_y, evidence * offsets[:, :, 1].float(),
                              "bnkx,bkyx->bnky") / valid_h[:, None, None]
    # No evidence at all under the prior (every term underflowed): its centre.
    found = total > torch.finfo(total.dtype).tiny
    total = total.clamp(min=torch.finfo(total.dtype).tiny)
    start = torch.stack([torch.where(found, x / total, layout_xy[..., 0]),
                         torch.where(found, y / total, layout_xy[..., 1])], -1)
    return start.clamp(0.0, 1.0)


def _offset_votes(weight_across: Tensor, weight_along: Tensor, weighted_offsets: Tensor,
                  equation: str) -> Tensor:
    """(B, N, K) sum over cells of weight x evidence x offset, factorised as above."""
    return (torch.einsum(equation, weight_across, weighted_offsets) * weight_along).sum(-1)


def heatmap_snap(logits: Tensor, mask: Tensor, boxes: Tensor, keypoints: Tensor,
                 pinned: Tensor, prior_sigma: float, offsets: Tensor | None = None) -> Tensor:
    """Keypoints (B, N, K, 2) drawn to the heatmap evidence near them (a soft-argmax under
    a Gaussian of `prior_sigma` x the box around each, cells moved by their `offsets`);
    pinned (B, N, K) ones stay exactly."""
    snapped = heatmap_start(logits, mask, boxes, keypoints, prior_sigma, offsets)
    return torch.where(pinned[..., None], keypoints, snapped)
