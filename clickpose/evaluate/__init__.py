"""Evaluation: COCO keypoint AP (pycocotools) and NoC, the clicks an annotator needs."""
from clickpose.evaluate.ap import STAT_NAMES, ApResult, evaluate_ap, per_image_ap
from clickpose.evaluate.editor import ManualEditor, ModelOnlyEditor, PoseEditor
from clickpose.evaluate.image_ap import ImageAp
from clickpose.evaluate.inputs import EvalInputError
from clickpose.evaluate.matching import TargetPersons, match_persons
from clickpose.evaluate.noc import NocResult, NocSettings, run_noc
from clickpose.evaluate.sources import checkpoint_editors, prediction_editors

__all__ = [
    "STAT_NAMES",
    "ApResult",
    "EvalInputError",
    "ImageAp",
    "ManualEditor",
    "ModelOnlyEditor",
    "NocResult",
    "NocSettings",
    "PoseEditor",
    "TargetPersons",
    "checkpoint_editors",
    "evaluate_ap",
    "match_persons",
    "per_image_ap",
    "prediction_editors",
    "run_noc",
]
