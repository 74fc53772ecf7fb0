"""K-means clusters of pooled backbone embeddings (scikit-learn), seeded."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans

from selection.diversity.k_center import as_embeddings


@dataclass
class Clusters:
    labels: np.ndarray    # (N,) cluster of each embedding
    centers: np.ndarray   # (C, D)
    inertia: float


def kmeans_clusters(embeddings, n_clusters: int, seed: int = 0, n_init: int = 1) -> Clusters:
    """k-means with k-means++ starts; n_clusters is capped at the number of distinct points."""
    x = as_embeddings(embeddings)
    if len(x) == 0:
        raise ValueError("kmeans_clusters: no embeddings to cluster")
    if n_clusters < 1:
        raise ValueError(f"kmeans_clusters: n_clusters is {n_clusters}; use at least 1")
    n_clusters = min(n_clusters, len(np.unique(x, axis=0)))
    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit(x)
    return Clusters(labels=km.labels_.astype(np.int64), centers=km.cluster_centers_,
                    inertia=float(km.inertia_))
