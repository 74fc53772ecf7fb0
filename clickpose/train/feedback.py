"""Human-feedback training: rounds of simulated clicks, refined by the keypoint decoder only.

After the normal forward, predictions are matched to the ground truth once (as the
official Click-Pose code does); each round clicks the worst keypoint of every matched
person (largest visibility-weighted error), sets it to the ground truth and pins it, and
re-runs only `decode_keypoints` from the previous round's keypoints. The number of rounds
is drawn with P(r) ~ 1/r^2 like the number of pinned keypoints. Earlier rounds run without
gradient (their output is only the next round's input); the last round's layers get the
same keypoint and person losses as the normal output, under the `fb_` prefix.
"""
from __future__ import annotations

import torch
from torch import Tensor

from clickpose.model.criterion import SetCriterion
from clickpose.model.matcher import PaddedTargets
from clickpose.model.pose_errors import sample_num_pinned

KEYPOINT_OUTPUT_KEYS = ("pred_logits", "pred_boxes", "pred_keypoints", "pred_visibility")


def keypoint_decoder_outputs(outputs: dict) -> dict:
    """The keypoint decoder's own outputs (final layer + aux layers), without the human
    detection and encoder outputs that decode_keypoints passes along."""
    out = {k: outputs[k] for k in KEYPOINT_OUTPUT_KEYS if k in outputs}
    out["aux_outputs"] = [{k: a[k] for k in KEYPOINT_OUTPUT_KEYS if k in a}
                          for a in outputs.get("aux_outputs", [])]
    return out


@torch.no_grad()
def simulate_clicks(keypoints: Tensor, pinned: Tensor, indices: list[tuple[Tensor, Tensor]],
                    targets: PaddedTargets) -> tuple[Tensor, Tensor]:
    """One click per matched person on its worst unpinned labelled keypoint.

    keypoints (B, N, K, 2) normalized, pinned (B, N, K); targets: the batch's normalized
    targets, padded. Returns new (keypoints, pinned); persons with nothing left to fix are
    not clicked. The whole batch's matched persons at once.
    """
    keypoints, pinned = keypoints.clone(), pinned.clone()
    device = keypoints.device
    batch = torch.cat([torch.full((len(src),), b, dtype=torch.int64)
                       for b, (src, _) in enumerate(indices)]).to(device)
    src = torch.cat([src for src, _ in indices]).to(device)
    tgt = torch.cat([tgt for _, tgt in indices]).to(device)
    if len(batch) == 0:
        return keypoints, pinned
    gt = targets.keypoints[batch, tgt].to(keypoints.dtype)               # (M, K, 2)
    weight = targets.keypoint_weights[batch, tgt]                        # (M, K)
    error = (keypoints[batch, src] - gt).abs().sum(-1) * weight
    error = error.masked_fill(pinned[batch, src] | (weight == 0), -1.0)
    worst = error.argmax(1)
    rows = torch.nonzero(error.max(1).values >= 0)[:, 0]
    b, person, kp = batch[rows], src[rows], worst[rows]
    keypoints[b, person, kp] = gt[rows, kp]
    pinned[b, person, kp] = True
    return keypoints, pinned


def feedback_losses(model, criterion: SetCriterion, state, humans, outputs: dict,
                    targets: list[dict], generator: torch.Generator,
                    max_rounds: int | None = None, num_rounds: int | None = None
                    ) -> dict[str, Tensor]:
    """Weighted `fb_` losses of the last simulated feedback round.

    targets: normalized. `num_rounds` fixes the number of rounds; otherwise it is drawn with
    P(r) ~ 1/r^2 over 1..max_rounds (default K, as the official code).
    """
    num_k = outputs["pred_keypoints"].shape[2]
    if num_rounds is None:
        num_rounds = int(sample_num_pinned(1, max_rounds or num_k, generator)[0])
    base = keypoint_decoder_outputs(outputs)
    padded = PaddedTargets.of(targets, outputs["pred_keypoints"].device)
    indices = criterion.matcher(base, targets, padded)
    # float32: a clicked keypoint must be the ground truth exactly, even under bf16 autocast.
    keypoints = outputs["pred_keypoints"].detach().float()
    pinned = torch.zeros(keypoints.shape[:3], dtype=torch.bool, device=keypoints.device)
    refined = None
    for r in range(num_rounds):
        keypoints, pinned = simulate_clicks(keypoints, pinned, indices, padded)
        last = r == num_rounds - 1
        with torch.set_grad_enabled(last and torch.is_grad_enabled()):
            refined = model.decode_keypoints(state, humans, init_keypoints=keypoints, pinned=pinned)
        if not last:
            keypoints = refined["pred_keypoints"].detach().float()
    return criterion(keypoint_decoder_outputs(refined), targets, normalized=True, prefix="fb_",
                     factor=criterion.weights.feedback)
