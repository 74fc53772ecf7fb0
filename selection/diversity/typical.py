"""Typical images of the clusters the labels leave uncovered (TypiClust, Hacohen, Dekel and
Weinshall, ICML 2022: "Active Learning on a Budget").

With a few hundred labels, the images that teach most are the typical ones of regions of the
data no label covers yet, not the far outliers that k-center reaches first. The pool and the
labeled images are clustered together (k-means, as many clusters as labels plus the batch, so
each new label can open a cluster of its own); each step takes the cluster with the fewest
labeled or chosen images (the largest first among equals, clusters under `min_cluster_size`
last) and from it the available image of highest typicality: the inverse of its mean distance
to its `neighbors` nearest neighbours within the cluster, a density estimate.
"""
from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from selection.diversity.k_center import as_embeddings
from selection.diversity.kmeans import kmeans_clusters
from selection.diversity.picks import first_picks
from selection.ties import order_by_score

NEIGHBORS = 20           # the paper's k for the density estimate
MIN_CLUSTER_SIZE = 5     # smaller clusters are too thin to hold a typical image; taken last


def typicality(points: np.ndarray, neighbors: int = NEIGHBORS) -> np.ndarray:
    """(N,) 1 / mean distance of each point to its min(neighbors, N - 1) nearest other
    points; a lone point gets 0 (nothing says it is typical)."""
    x = as_embeddings(points, "cluster")
    k = min(neighbors, len(x) - 1)
    if k < 1:
        return np.zeros(len(x))
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    mean = distances[:, 1:].mean(axis=1)              # column 0 is the point itself
    return 1.0 / np.maximum(mean, 1e-12)


class TypicalClusters:
    """The picker: cluster by cluster, the most typical available image of the least covered.

    embeddings (N, D) are the candidates; labeled_embeddings (M, D) the labeled images, which
    shape the clusters and count as covering them but are never chosen. n_clusters defaults to
    M + budget at the caller (selection.select_batch); it is capped at the points there are.
    """

    def __init__(self, embeddings, labeled_embeddings=None, n_clusters: int = 1, seed: int = 0,
                 tie_rank: np.ndarray | None = None, neighbors: int = NEIGHBORS,
                 min_cluster_size: int = MIN_CLUSTER_SIZE):
        x = as_embeddings(embeddings)
        labeled = (np.empty((0, x.shape[1])) if labeled_embeddings is None
                   else as_embeddings(labeled_embeddings, "labeled").reshape(-1, x.shape[1]))
        points = np.concatenate([x, labeled])
        clusters = kmeans_clusters(points, max(1, min(n_clusters, len(points))), seed=seed)
        self.labels = clusters.labels[:len(x)]
        sizes = np.bincount(clusters.labels, minlength=len(clusters.centers))
        self.size = sizes
        self.covered = np.bincount(clusters.labels[len(x):], minlength=len(sizes))
        self.min_cluster_size = min_cluster_size
        rank = np.arange(len(x)) if tie_rank is None else np.asarray(tie_rank)
        self.typicality = np.zeros(len(x))
        self.members: dict[int, list[int]] = {}
        for c in np.unique(self.labels):
            in_cluster = np.flatnonzero(clusters.labels == c)        # candidates and labeled
            density = typicality(points[in_cluster], neighbors)
            candidates = in_cluster < len(x)
            self.typicality[in_cluster[candidates]] = density[candidates]
            mine = in_cluster[candidates]
            self.members[int(c)] = [int(mine[j]) for j in
                                    order_by_score(density[candidates], rank[mine])]
        self.pointer = {c: 0 for c in self.members}
        self.cluster_rank = {c: int(rank[m[0]]) for c, m in self.members.items()}

    def _next_in(self, c: int, available: np.ndarray) -> int | None:
        items, p = self.members[c], self.pointer[c]
        while p < len(items) and not available[items[p]]:
            p += 1              # availability only shrinks, so a skipped image stays skipped
        self.pointer[c] = p
        return items[p] if p < len(items) else None

    def _priority(self, c: int) -> tuple:
        thin = self.size[c] < self.min_cluster_size
        return (thin, int(self.covered[c]), -int(self.size[c]), self.cluster_rank[c])

    def pick(self, available: np.ndarray) -> tuple[int, str] | None:
        open_clusters = [c for c in self.members if self._next_in(c, available) is not None]
        if not open_clusters:
            return None
        c = min(open_clusters, key=self._priority)
        i = self._next_in(c, available)
        covered = int(self.covered[c])
        self.pointer[c] += 1
        self.covered[c] += 1
        return i, (f"typical image of cluster {c} ({int(self.size[c])} images, {covered} "
                   f"labeled or chosen before it): typicality {self.typicality[i]:.4g}")


def typical_clusters(embeddings, k: int, labeled_embeddings=None, n_clusters: int | None = None,
                     seed: int = 0, tie_rank: np.ndarray | None = None) -> list[int]:
    """k candidate indices, in the order TypicalClusters chooses them (n_clusters default:
    labeled + k)."""
    x = as_embeddings(embeddings)
    if len(x) == 0 or k <= 0:
        return []
    labeled = 0 if labeled_embeddings is None else len(labeled_embeddings)
    picker = TypicalClusters(x, labeled_embeddings, n_clusters or labeled + k, seed, tie_rank)
    return first_picks(picker, len(x), k)
