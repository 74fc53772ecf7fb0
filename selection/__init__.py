"""Active-learning selection: score an unlabeled pool and choose the batch to label.

A library without orchestration: flows call these functions. Scores are per image, higher =
more useful to label, with per-person details for the annotator's worst-first ordering.
"""
from selection.budget import select_batch
from selection.checks import PredictionError, check_poses
from selection.diversity import (
    k_center_greedy,
    kmeans_clusters,
    top_uncertainty_per_cluster,
    typical_clusters,
    uncertainty_weighted_k_center,
)
from selection.ids import shard_of
from selection.pool import merge_pool_scores, score_pool, shard_ids
from selection.results import (
    ImageScore,
    PersonScore,
    PoolScores,
    ScoringStats,
    SelectedImage,
    Selection,
)
from selection.scores import (
    disagreement,
    entropy,
    error_consistency,
    expected_clicks,
    least_confidence,
    random_score,
    training_pose_errors,
)
from selection.strategies import STRATEGIES

__all__ = [
    "STRATEGIES",
    "ImageScore",
    "PersonScore",
    "PoolScores",
    "PredictionError",
    "ScoringStats",
    "SelectedImage",
    "Selection",
    "check_poses",
    "disagreement",
    "entropy",
    "error_consistency",
    "expected_clicks",
    "k_center_greedy",
    "kmeans_clusters",
    "least_confidence",
    "merge_pool_scores",
    "random_score",
    "score_pool",
    "select_batch",
    "shard_ids",
    "shard_of",
    "top_uncertainty_per_cluster",
    "training_pose_errors",
    "typical_clusters",
    "uncertainty_weighted_k_center",
]
