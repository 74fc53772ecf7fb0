"""perturb_fn for error_consistency from the training-time error simulation.

Perturbing predictions with the same errors the keypoint decoder learned to repair (jitter,
miss, swap, inversion; clickpose.model.pose_errors) makes the consistency score ask the decoder
the question it was trained on. torch is imported only when this perturbation is built.
"""
from __future__ import annotations

import numpy as np

from clickpose.keypoints import KeypointSchema
from clickpose.poses import Poses
from selection.scores.error_consistency import PerturbFn


def training_pose_errors(schema: KeypointSchema, probs=None) -> PerturbFn:
    """perturb_fn(poses, rng) -> Poses with simulated errors on the keypoints (boxes kept).

    probs: a clickpose.model.pose_errors.ErrorProbs, default the training one. The torch
    generator is seeded from `rng`, so error_consistency's seed fixes the errors.
    """
    import torch

    from clickpose.model.pose_errors import ErrorProbs, simulate_pose_errors

    probs = probs or ErrorProbs()

    def perturb(poses: Poses, rng: np.random.Generator) -> Poses:
        out = poses.copy()
        if poses.num_persons == 0:
            return out
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        noised, _pinned, _types = simulate_pose_errors(
            torch.from_numpy(poses.keypoints), torch.from_numpy(poses.visibility),
            torch.from_numpy(poses.boxes), schema, generator, probs)
        out.keypoints = noised.double().numpy()
        return out

    return perturb
