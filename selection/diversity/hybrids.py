"""Uncertainty and diversity together.

- top uncertainty per cluster: k-means the pool, then take clusters in turn (the cluster whose
  best image scores highest first), each time the highest-scoring image left in that cluster:
  uncertain images, but never many from one corner of the data.
- uncertainty-weighted k-center: greedy k-center where each step maximises
  weight * distance to the nearest center, weight = eps + (1 - eps) * score min-max scaled to
  [0, 1]: far and uncertain images first, and a far but sure image still has a chance.
"""
from __future__ import annotations

import numpy as np

from selection.diversity.k_center import KCenter, as_embeddings
from selection.diversity.kmeans import kmeans_clusters
from selection.diversity.picks import first_picks
from selection.ties import order_by_score


def uncertainty_weights(scores: np.ndarray, eps: float = 0.05) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    span = s.max() - s.min() if len(s) else 0.0
    scaled = (s - s.min()) / span if span > 0 else np.ones_like(s)
    return eps + (1 - eps) * scaled


class ClusterRoundRobin:
    """Clusters in turn, the best remaining image of each (scores and ties fixed up front)."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray, tie_rank: np.ndarray | None = None):
        scores = np.asarray(scores, dtype=np.float64)
        rank = np.arange(len(scores)) if tie_rank is None else tie_rank
        order = order_by_score(scores, rank)
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        members: dict[int, list[int]] = {}
        for i in order:                                       # each list best first
            members.setdefault(int(labels[i]), []).append(int(i))
        self.clusters = sorted(members, key=lambda c: position[members[c][0]])  # best first
        self.members = members
        self.pointer = {c: 0 for c in self.clusters}
        self.scores = scores
        self.cursor = 0

    def pick(self, available: np.ndarray) -> tuple[int, str] | None:
        for _ in range(len(self.clusters)):
            c = self.clusters[self.cursor]
            self.cursor = (self.cursor + 1) % len(self.clusters)
            items, p = self.members[c], self.pointer[c]
            while p < len(items) and not available[items[p]]:
                p += 1          # availability only shrinks, so a skipped image stays skipped
            self.pointer[c] = p
            if p < len(items):
                self.pointer[c] = p + 1
                i = items[p]
                return i, f"cluster {c}: its highest score left ({self.scores[i]:.4g})"
        return None


def top_uncertainty_per_cluster(embeddings, scores, k: int, n_clusters: int | None = None,
                                seed: int = 0, tie_rank: np.ndarray | None = None) -> list[int]:
    """k indices: the most uncertain image of each k-means cluster, clusters in turn."""
    x = as_embeddings(embeddings)
    if len(x) == 0:
        return []
    labels = kmeans_clusters(x, n_clusters or k, seed=seed).labels
    return first_picks(ClusterRoundRobin(labels, scores, tie_rank), len(x), k)


def uncertainty_weighted_k_center(embeddings, scores, k: int, already_selected=(),
                                  tie_rank: np.ndarray | None = None) -> list[int]:
    """k indices by greedy k-center on weight * distance (weights from the scores)."""
    x = as_embeddings(embeddings)
    already = np.asarray(list(already_selected), dtype=np.int64)
    state = KCenter(x, centers=x[already], weights=uncertainty_weights(scores), tie_rank=tie_rank)
    return first_picks(state, len(x), k, excluded=already)
