"""Click-Pose: an end-to-end multi-person keypoint detector with interactive refinement."""
from clickpose.keypoints import KeypointSchema, coco17, coco17_plus

__all__ = ["KeypointSchema", "coco17", "coco17_plus"]
__version__ = "0.1.0"
