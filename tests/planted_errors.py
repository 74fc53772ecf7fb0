"""A hand-made image of two persons and predictions with one planted error of each kind
(clickpose.evaluate.error_classes): a jittered nose, a left wrist on the right one, a left
ankle on the other person's, a left knee near nothing."""
import numpy as np

from clickpose.keypoints import coco17

SCHEMA = coco17()
NOSE, LEFT_WRIST, RIGHT_WRIST, LEFT_KNEE, LEFT_ANKLE = 0, 9, 10, 13, 15


def _pose(shift_x: float) -> np.ndarray:
    k = np.arange(17)
    return np.stack([40.0 + shift_x + (k % 4) * 10.0, 20.0 + k * 8.0], -1)


def planted_dataset() -> dict:
    names = SCHEMA.keypoints
    annotations = []
    for i, shift in enumerate((0.0, 100.0)):
        pose = _pose(shift)
        annotations.append({
            "id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 4000.0,
            "num_keypoints": 17, "bbox": [float(pose[:, 0].min()), 20.0, 30.0, 128.0],
            "keypoints": np.concatenate([pose, np.full((17, 1), 2.0)], 1).flatten().tolist()})
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 200}],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "keypoints": names,
                            "skeleton": [[a + 1, b + 1] for a, b in SCHEMA.skeleton]}]}


def _result(pose: np.ndarray, score: float) -> dict:
    return {"image_id": 1, "category_id": 1, "score": score,
            "keypoints": np.concatenate([pose, np.full((17, 1), 1.0)], 1).flatten().tolist()}


def planted_predictions() -> list[dict]:
    first, second = _pose(0.0), _pose(100.0)
    planted = first.copy()
    planted[NOSE, 0] += 2.8                       # OKS term about 0.7: jitter
    planted[LEFT_WRIST] = first[RIGHT_WRIST]      # on its partner: inversion
    planted[LEFT_ANKLE] = second[LEFT_ANKLE]      # on the other person's: swap
    planted[LEFT_KNEE] = (195.0, 195.0)           # near nothing: miss
    return [_result(planted, 0.9), _result(second, 0.8)]
