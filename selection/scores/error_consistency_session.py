"""Error-modeling consistency of a model's interactive session on one image.

The session holds the model's prediction (`session.poses`) and the image's encoder memory;
`session.refine(poses)` re-runs only the keypoint decoder from given poses with nothing pinned.
The perturbation is the training one (clickpose.model.pose_errors through
`training_pose_errors`), so the decoder is asked the question it was trained to answer:
    prediction --simulated errors--> perturbed --session.refine--> refined
    score = mean over trials and persons of 1 - OKS(refined, prediction)
One backbone/encoder pass per image (when the session opens), then one decoder pass per trial.
"""
from __future__ import annotations

from selection.results import ImageScore
from selection.scores.error_consistency import error_consistency
from selection.scores.perturbations import training_pose_errors


def session_error_consistency(image_id, session, trials: int = 3, seed: int = 0,
                              min_person_score: float = 0.3, probs=None,
                              empty_score: float = 1.0) -> ImageScore:
    """error_consistency of `session.poses`, refined by `session.refine`.

    session: a clickpose.model.session.InteractiveSession (anything with `poses`, `schema`
    and `refine(poses) -> Poses`). probs: a clickpose.model.pose_errors.ErrorProbs (default:
    the training one). Same seed and image id, same errors.
    """
    schema = session.schema
    return error_consistency(image_id, session.poses, session.refine,
                             training_pose_errors(schema, probs), schema.sigmas_array,
                             trials=trials, seed=seed, min_person_score=min_person_score,
                             empty_score=empty_score)
