"""FiftyOne views of the pool: images as samples, poses as fo.Keypoints (+ boxes as
fo.Detections), the schema's skeleton, and selection scores as sample fields."""
from clickpose.labels_fo.convert import (
    detections_to_boxes,
    keypoints_to_poses,
    poses_to_detections,
    poses_to_keypoints,
    set_skeleton,
    skeleton_of,
)
from clickpose.labels_fo.pool import (
    SELECTION_FIELDS,
    add_predictions,
    pool_dataset,
    sample_poses,
    set_selection_fields,
)

__all__ = ["SELECTION_FIELDS", "add_predictions", "detections_to_boxes", "keypoints_to_poses",
           "pool_dataset", "poses_to_detections", "poses_to_keypoints", "sample_poses",
           "set_selection_fields", "set_skeleton", "skeleton_of"]
