"""Diversity on pooled backbone embeddings (N, D): core-set, clusters, typical images of
uncovered clusters, and hybrids."""
from selection.diversity.hybrids import (
    ClusterRoundRobin,
    top_uncertainty_per_cluster,
    uncertainty_weighted_k_center,
    uncertainty_weights,
)
from selection.diversity.k_center import KCenter, k_center_greedy
from selection.diversity.kmeans import Clusters, kmeans_clusters
from selection.diversity.typical import TypicalClusters, typical_clusters, typicality

__all__ = [
    "ClusterRoundRobin",
    "Clusters",
    "KCenter",
    "TypicalClusters",
    "k_center_greedy",
    "kmeans_clusters",
    "top_uncertainty_per_cluster",
    "typical_clusters",
    "typicality",
    "uncertainty_weighted_k_center",
    "uncertainty_weights",
]
