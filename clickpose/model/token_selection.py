"""Which encoder tokens the encoder's layers update: the foreground ones.

Most of an image's tokens are background, yet a dense encoder spends the same attention and
feed-forward work on each (Sparse DETR, Roh et al. 2022; Focus-DETR, Zheng et al. 2023). A
small scorer reads every token before the encoder and learns, from the persons' boxes,
whether the token lies on a person; the encoder's layers then update only the best-scored
fraction of the tokens, while every token stays a value that they read. The other tokens
keep their input projection, which the heatmaps and the proposals still see.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss


class TokenScorer(nn.Module):
    """(B, S, D) tokens (with their position and level embedding) -> (B, S) foreground logits."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, 1))
        # Start at a foreground probability of 0.1, near the share of person tokens.
        nn.init.constant_(self.mlp[-1].bias, -math.log(9.0))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.mlp(tokens).squeeze(-1)


def select_tokens(logits: Tensor, padding: Tensor, ratio: float) -> Tensor:
    """(B, S) logits, (B, S) True on padding -> (B, k) indices of the best-scored tokens,
    k = ceil(ratio * S) for every image of the batch (padding never chosen before a token)."""
    count = min(logits.shape[1], max(1, math.ceil(ratio * logits.shape[1])))
    scores = logits.detach().float().masked_fill(padding, float("-inf"))
    return scores.topk(count, dim=1, sorted=False).indices


def token_centres(level_shapes: list[tuple[int, int]], valid_ratios: Tensor
                  ) -> tuple[Tensor, Tensor]:
    """Each token's centre and half cell in the image's normalized (unpadded) frame:
    (B, S, 2) x y, (B, S, 2) half width, half height."""
    centres, halves = [], []
    for lvl, (h, w) in enumerate(level_shapes):
        ys, xs = torch.meshgrid(
            torch.arange(h, device=valid_ratios.device, dtype=torch.float32) + 0.5,
            torch.arange(w, device=valid_ratios.device, dtype=torch.float32) + 0.5, indexing="ij")
        extent = valid_ratios[:, lvl].float() * torch.tensor([w, h], device=valid_ratios.device)
        xy = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)             # (h*w, 2) in cells
        centres.append(xy[None] / extent[:, None])
        halves.append((0.5 / extent)[:, None].expand(-1, h * w, 2))
    return torch.cat(centres, 1), torch.cat(halves, 1)


def foreground_targets(centres: Tensor, halves: Tensor, targets: list[dict]) -> Tensor:
    """(B, S) 1 where a token's cell overlaps a person's box or a crowd region, else 0.
    targets: normalize_targets() output (boxes cxcywh, crowd_boxes xyxy, normalized)."""
    out = torch.zeros(centres.shape[:2], device=centres.device)
    for b, t in enumerate(targets):
        boxes = t["boxes"].float()
        xyxy = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1)
        xyxy = torch.cat([xyxy, t.get("crowd_boxes", xyxy[:0]).float()], 0)
        if len(xyxy) == 0:
            continue
        c, half = centres[b, :, None], halves[b, :, None]              # (S, 1, 2)
        inside = (c + half > xyxy[None, :, :2]) & (c - half < xyxy[None, :, 2:])
        out[b] = inside.all(-1).any(-1).float()
    return out


def token_saliency_loss(saliency: dict, targets: list[dict]) -> Tensor:
    """Focal loss of the scorer's logits against the boxes' foreground, over the unpadded
    tokens, normalized by the foreground tokens. saliency: {logits (B, S), centres,
    halves (B, S, 2), padding (B, S)}."""
    target = foreground_targets(saliency["centres"], saliency["halves"], targets)
    loss = sigmoid_focal_loss(saliency["logits"].float(), target, alpha=0.25, gamma=2.0,
                              reduction="none")
    loss = loss.masked_fill(saliency["padding"], 0.0)
    return loss.sum() / target.sum().clamp(min=1.0)
