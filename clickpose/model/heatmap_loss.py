"""Training signal of the keypoint heatmaps: CornerNet's focal loss on Gaussian targets.

Each labelled keypoint is a Gaussian on its type's map, as wide as the keypoint's OKS
tolerance (2 sigma_k sqrt(area)) and at least most of a cell; its nearest cell is the one
positive. Padding cells and cells inside crowd regions (unlabelled people) teach nothing.
With offsets, every cell within OFFSET_RADIUS_CELLS of a labelled keypoint learns the
vector from its centre to the nearest keypoint of that type (L1, in cells), as CenterNet's
offsets do for its one peak cell: the soft-argmax reads them from every cell it weighs.
"""
from __future__ import annotations

import torch
from torch import Tensor

from clickpose.model.encoder import valid_cells
from clickpose.model.keypoint_heatmap import cell_centres

MIN_SIGMA_CELLS = 0.8
OFFSET_RADIUS_CELLS = 1.5


def heatmap_targets(tn: list[dict], mask: Tensor, sigmas: Tensor) -> tuple[Tensor, Tensor]:
    """Gaussian targets (B, K, h, w) and the positive cells (B, K, h, w) bool.

    tn: normalized targets (criterion.normalize_targets); mask (B, h, w) True on padding;
    sigmas (K,) the schema's OKS sigmas. Every labelled keypoint of the batch is drawn in one
    pass (a loop over images costs a GPU step more host time than the drawing).
    """
    batch, h, w = mask.shape
    num_k = sigmas.shape[0]
    targets = torch.zeros(batch, num_k, h, w, device=mask.device)
    positive = torch.zeros(batch, num_k, h, w, dtype=torch.bool, device=mask.device)
    persons = _batch_persons(tn, mask)
    if persons is None:
        return targets, positive
    image, keypoints, labelled, area, scale = persons
    valid_w, valid_h = valid_cells(mask)
    cells_wh = torch.stack([valid_w, valid_h], -1)[image]                     # (G, 2)
    cells = keypoints * cells_wh[:, None] - 0.5                               # (G, K, 2)
    cell_px = (scale / cells_wh).mean(-1)                                     # (G,)
    sigma = (2 * sigmas[None] * area.sqrt()[:, None] / cell_px[:, None])
    sigma = sigma.clamp(min=MIN_SIGMA_CELLS)                                  # (G, K)
    g, k = torch.nonzero(labelled, as_tuple=True)
    b = image[g]
    cx, cy, s = cells[g, k, 0], cells[g, k, 1], sigma[g, k]
    grid_y = torch.arange(h, device=mask.device, dtype=torch.float32)[:, None]
    grid_x = torch.arange(w, device=mask.device, dtype=torch.float32)[None]
    blobs = torch.exp(-((grid_x[None] - cx[:, None, None]) ** 2
                        + (grid_y[None] - cy[:, None, None]) ** 2) / (2 * s[:, None, None] ** 2))
    # Overlapping persons: each cell keeps the larger value of its type.
    targets.view(batch * num_k, -1).scatter_reduce_(
        0, (b * num_k + k)[:, None].expand(-1, h * w), blobs.view(len(k), h * w), "amax")
    px = cx.round().long().clamp(0, w - 1)
    py = cy.round().long().clamp(0, h - 1)
    inside = (cx > -0.5) & (cx < valid_w[b] - 0.5) & (cy > -0.5) & (cy < valid_h[b] - 0.5)
    positive[b[inside], k[inside], py[inside], px[inside]] = True
    targets = torch.where(positive, torch.ones_like(targets), targets)
    return targets, positive


def _batch_persons(tn: list[dict], mask: Tensor):
    """The batch's persons side by side: image index (G,), keypoints (G, K, 2), labelled
    (G, K), area (G,) and their image's scale (G, 2); None without a person."""
    counts = torch.tensor([len(t["keypoints"]) for t in tn], device=mask.device)
    if int(counts.sum()) == 0:
        return None
    image = torch.repeat_interleave(torch.arange(len(tn), device=mask.device), counts)
    keypoints = torch.cat([t["keypoints"].float() for t in tn])
    labelled = torch.cat([t["keypoint_weights"] for t in tn]) > 0
    area = torch.cat([t["area"].float() for t in tn])
    scale = torch.stack([t["scale"].float() for t in tn])[image]
    return image, keypoints, labelled, area, scale


def crowd_cells(tn: list[dict], mask: Tensor) -> Tensor:
    """(B, h, w) True on cells whose centre lies in a crowd region."""
    xs, ys = cell_centres(mask)
    ignore = torch.zeros_like(mask)
    for b, t in enumerate(tn):
        crowd = t.get("crowd_boxes")
        if crowd is None or len(crowd) == 0:
            continue
        in_x = (xs[b][None] >= crowd[:, None, 0]) & (xs[b][None] <= crowd[:, None, 2])  # (M, w)
        in_y = (ys[b][None] >= crowd[:, None, 1]) & (ys[b][None] <= crowd[:, None, 3])  # (M, h)
        ignore[b] = (in_y[:, :, None] & in_x[:, None, :]).any(0)
    return ignore


def heatmap_focal_loss(logits: Tensor, mask: Tensor, tn: list[dict], sigmas: Tensor) -> Tensor:
    """CornerNet focal loss (alpha 2, beta 4) summed over cells, per positive cell."""
    targets, positive = heatmap_targets(tn, mask, sigmas)
    counted = ~(mask | crowd_cells(tn, mask))[:, None]
    prob = logits.float().sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = prob.log() * (1 - prob) ** 2 * positive
    neg = (1 - prob).log() * prob ** 2 * (1 - targets) ** 4 * (~positive & counted)
    return -(pos.sum() + neg.sum()) / positive.sum().clamp(min=1)


def offset_targets(tn: list[dict], mask: Tensor, num_k: int,
                   radius: float = OFFSET_RADIUS_CELLS) -> tuple[Tensor, Tensor]:
    """Offsets (B, K, 2, h, w) in cells from each cell's centre to the nearest labelled
    keypoint of its type, and where they are taught (B, K, h, w) bool: unpadded cells within
    `radius` cells of one."""
    batch, h, w = mask.shape
    valid_w, valid_h = valid_cells(mask)
    targets = torch.zeros(batch, num_k, 2, h, w, device=mask.device)
    taught = torch.zeros(batch, num_k, h, w, dtype=torch.bool, device=mask.device)
    grid = torch.stack(torch.meshgrid(torch.arange(w, device=mask.device, dtype=torch.float32),
                                      torch.arange(h, device=mask.device, dtype=torch.float32),
                                      indexing="xy"), -1).view(-1, 2)              # (hw, 2)
    for b, t in enumerate(tn):
        labelled = t["keypoint_weights"] > 0                                  # (G, K)
        if not labelled.any():
            continue
        cells = t["keypoints"].float() * torch.stack([valid_w[b], valid_h[b]]) - 0.5  # (G, K, 2)
        to_keypoint = cells[:, :, None, :] - grid[None, None]                 # (G, K, hw, 2)
        distance = to_keypoint.norm(dim=-1).masked_fill(~labelled[:, :, None], float("inf"))
        nearest_distance, nearest = distance.min(0)                            # (K, hw)
        offset = to_keypoint.gather(0, nearest[None, :, :, None].expand(1, -1, -1, 2))[0]
        targets[b] = offset.permute(0, 2, 1).reshape(num_k, 2, h, w)
        taught[b] = (nearest_distance < radius).view(num_k, h, w) & ~mask[b][None]
    return targets, taught


def offset_l1_loss(offsets: Tensor, mask: Tensor, tn: list[dict]) -> Tensor:
    """L1 of the (B, K, 2, h, w) predicted offsets, per taught cell."""
    targets, taught = offset_targets(tn, mask, offsets.shape[1])
    error = (offsets.float() - targets).abs().sum(2)                          # (B, K, h, w)
    return (error * taught).sum() / taught.sum().clamp(min=1)
