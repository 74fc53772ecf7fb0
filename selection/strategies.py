"""How select_batch orders the pool: one picker per strategy.

A picker's pick(available) returns the next image (index, reason) among the `available` ones,
or None. select_batch shrinks `available` as images are chosen or stop fitting the clicks left,
so every strategy respects the budget by construction.

  top                highest score first
  random             seeded random order (the score is not used)
  top_per_click      highest score / max(cost, min_cost) first: cost-aware
  k_center           greedy k-center on embeddings, labeled images as the first centers
  weighted_k_center  k-center on uncertainty weight x distance
  k_center_per_click k-center on distance / max(cost, min_cost): coverage per click, cost-aware
  cluster_top        k-means clusters in turn, the highest score left in each
  typical_clusters   the most typical image of the least covered k-means cluster (TypiClust)
Ties always go to the seeded rank (selection.ties), so the same seed gives the same choice.
"""
from __future__ import annotations

import numpy as np

from selection.diversity.hybrids import ClusterRoundRobin, uncertainty_weights
from selection.diversity.k_center import KCenter
from selection.diversity.kmeans import kmeans_clusters
from selection.diversity.typical import TypicalClusters
from selection.ties import order_by_score

STRATEGIES = ("top", "random", "top_per_click", "k_center", "weighted_k_center",
              "k_center_per_click", "cluster_top", "typical_clusters")
NEEDS_EMBEDDINGS = ("k_center", "weighted_k_center", "k_center_per_click", "cluster_top",
                    "typical_clusters")
NEEDS_COSTS = ("top_per_click", "k_center_per_click")


class OrderPicker:
    """Walks a fixed order, skipping images that are no longer available."""

    def __init__(self, order: np.ndarray, reasons):
        self.order = [int(i) for i in order]
        self.reasons = reasons          # index -> str
        self.pointer = 0

    def pick(self, available: np.ndarray) -> tuple[int, str] | None:
        while self.pointer < len(self.order) and not available[self.order[self.pointer]]:
            self.pointer += 1           # availability only shrinks: never revisit
        if self.pointer == len(self.order):
            return None
        i = self.order[self.pointer]
        self.pointer += 1
        return i, self.reasons(i)


def make_picker(strategy: str, scores: np.ndarray, costs: np.ndarray | None,
                rank: np.ndarray, seed: int, method: str, embeddings: np.ndarray | None = None,
                labeled_embeddings: np.ndarray | None = None, n_clusters: int | None = None,
                min_cost: float = 1.0):
    if strategy == "top":
        return OrderPicker(order_by_score(scores, rank),
                           lambda i: f"top score {scores[i]:.4g} ({method})")
    if strategy == "random":
        return OrderPicker(np.argsort(rank), lambda i: f"random order (seed {seed})")
    if strategy == "top_per_click":
        per_click = scores / np.maximum(costs, min_cost)
        return OrderPicker(
            order_by_score(per_click, rank),
            lambda i: f"score per click {per_click[i]:.4g} ({method} {scores[i]:.4g} / "
                      f"{costs[i]:.3g} clicks)")
    if strategy == "k_center":
        return KCenter(embeddings, centers=labeled_embeddings, tie_rank=rank)
    if strategy == "weighted_k_center":
        return KCenter(embeddings, centers=labeled_embeddings, weights=uncertainty_weights(scores),
                       tie_rank=rank)
    if strategy == "k_center_per_click":
        return KCenter(embeddings, centers=labeled_embeddings,
                       weights=1.0 / np.maximum(costs, min_cost), tie_rank=rank,
                       weight_name="1 / predicted clicks")
    if strategy == "cluster_top":
        labels = kmeans_clusters(embeddings, n_clusters, seed=seed).labels
        return ClusterRoundRobin(labels, scores, rank)
    if strategy == "typical_clusters":
        return TypicalClusters(embeddings, labeled_embeddings, n_clusters, seed=seed,
                               tie_rank=rank)
    raise ValueError(f"strategy '{strategy}' is unknown; use one of {', '.join(STRATEGIES)}")
