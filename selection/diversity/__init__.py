"""Diversity on pooled backbone embeddings (N, D): core-set, clusters and hybrids."""
from selection.diversity.hybrids import (
    ClusterRoundRobin,
    top_uncertainty_per_cluster,
    uncertainty_weighted_k_center,
    uncertainty_weights,
)
from selection.diversity.k_center import KCenter, k_center_greedy
from selection.diversity.kmeans import Clusters, kmeans_clusters

__all__ = [
    "ClusterRoundRobin",
    "Clusters",
    "KCenter",
    "k_center_greedy",
    "kmeans_clusters",
    "top_uncertainty_per_cluster",
    "uncertainty_weighted_k_center",
    "uncertainty_weights",
]
