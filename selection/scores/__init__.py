"""Per-image scores from a model's predictions: higher = more useful to label."""
from selection.scores.disagreement import disagreement
from selection.scores.entropy import entropy
from selection.scores.error_consistency import error_consistency
from selection.scores.error_consistency_session import session_error_consistency
from selection.scores.expected_clicks import confidence_clicks, expected_clicks
from selection.scores.least_confidence import least_confidence
from selection.scores.perturbations import training_pose_errors
from selection.scores.random_score import random_score

__all__ = [
    "confidence_clicks",
    "disagreement",
    "entropy",
    "error_consistency",
    "expected_clicks",
    "least_confidence",
    "random_score",
    "session_error_consistency",
    "training_pose_errors",
]
