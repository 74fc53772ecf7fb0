"""Greedy k-center (core-set, Sener & Savarese 2018) on pooled backbone embeddings.

Each step takes the point farthest from every center so far (the labeled images and those
already chosen): the chosen set covers the embedding space with the smallest radius a greedy
choice gives (within 2x of the best). With no center at all, it starts at the point nearest to
the mean, the most typical image. Distances are Euclidean; each point keeps only the distance to
its nearest center (O(N) memory, no (N, N) matrix), labeled centers enter in bounded blocks.
"""
from __future__ import annotations

import numpy as np

from selection.diversity.picks import first_picks
from selection.ties import argmax_available


def _distances(x: np.ndarray, point: np.ndarray) -> np.ndarray:
    return np.sqrt(((x - point) ** 2).sum(axis=1))


def _min_distances(x: np.ndarray, centers: np.ndarray, max_block: int = 2**24) -> np.ndarray:
    """(N,) distance of each row of x to its nearest center, in blocks of centers.

    |x - c|^2 = |x|^2 + |c|^2 - 2 x.c through a matrix product: many labeled images become
    centers in seconds, with at most max_block numbers (N x block) alive at once.
    """
    out = np.full(len(x), np.inf)
    x_sq = (x ** 2).sum(axis=1)
    step = max(1, max_block // max(len(x), 1))
    for start in range(0, len(centers), step):
        c = centers[start:start + step]
        d2 = x_sq[:, None] + (c ** 2).sum(axis=1)[None] - 2 * x @ c.T   # (N, block)
        np.minimum(out, np.sqrt(np.clip(d2, 0, None)).min(axis=1), out=out)
    return out


def as_embeddings(embeddings, where: str = "embeddings") -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{where}: shape {x.shape}; expected (N, D) pooled embeddings")
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise ValueError(f"{where}: row {row} is not finite; recompute that image's embedding")
    return x


class KCenter:
    """Greedy k-center state: each point's distance to its nearest center.

    weights (N,) turn it into weighted k-center: the step takes the largest weight * distance,
    and with no center yet the largest weight (uncertainty, or 1 / predicted clicks; weight_name
    says which in each choice's reason).
    """

    def __init__(self, embeddings, centers=None, weights: np.ndarray | None = None,
                 tie_rank: np.ndarray | None = None, weight_name: str = "weight"):
        self.x = as_embeddings(embeddings)                       # (N, D)
        self.min_dist = np.full(len(self.x), np.inf)             # (N,)
        self.weights = weights
        self.weight_name = weight_name
        self.tie_rank = tie_rank
        self.num_centers = 0
        if centers is not None:
            centers = as_embeddings(centers, "centers").reshape(-1, self.x.shape[1])
            if len(centers):
                self.min_dist = _min_distances(self.x, centers)
                self.num_centers = len(centers)

    def _add_point(self, point: np.ndarray) -> None:
        np.minimum(self.min_dist, _distances(self.x, point), out=self.min_dist)
        self.num_centers += 1

    def add(self, index: int) -> None:
        self._add_point(self.x[index])

    def values(self) -> np.ndarray:
        if self.num_centers == 0:
            if self.weights is not None:
                return np.asarray(self.weights, dtype=np.float64)
            return -_distances(self.x, self.x.mean(axis=0))
        return self.min_dist if self.weights is None else self.min_dist * self.weights

    def pick(self, available: np.ndarray) -> tuple[int, str] | None:
        """Choose the next center among `available` (bool (N,)) and add it."""
        i = argmax_available(self.values(), available, self.tie_rank)
        if i is None:
            return None
        if self.num_centers == 0:
            start = (f"highest {self.weight_name}" if self.weights is not None
                     else "the image nearest the mean embedding")
            reason = "k-center start: " + start
        else:
            reason = (f"k-center: distance {self.min_dist[i]:.4g} to the nearest labeled or "
                      "chosen image")
            if self.weights is not None:
                reason += f", {self.weight_name} {self.weights[i]:.4g}"
        self.add(i)
        return i, reason


def k_center_greedy(embeddings, k: int, already_selected=(),
                    tie_rank: np.ndarray | None = None) -> list[int]:
    """Indices of k new centers, in the order chosen; `already_selected` are centers already."""
    x = as_embeddings(embeddings)
    already = np.asarray(list(already_selected), dtype=np.int64)
    return first_picks(KCenter(x, centers=x[already], tie_rank=tie_rank), len(x), k,
                       excluded=already)
