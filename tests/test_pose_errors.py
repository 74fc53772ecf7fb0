"""Pose error modeling: each error type does what its name says; pinned points stay exact."""
import math

import pytest
import torch

from clickpose.keypoints import coco17
from clickpose.model.pose_errors import (
    JITTER_OKS_RANGE,
    MISS_MAX_OKS,
    ErrorProbs,
    PoseError,
    build_dn_queries,
    invert,
    jitter,
    miss,
    num_pinned_probabilities,
    sample_num_pinned,
    simulate_pose_errors,
    swap,
)

SCHEMA = coco17()
K = SCHEMA.num_keypoints
SIGMAS = torch.tensor(SCHEMA.sigmas)


def _people(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(n, 2, generator=g) * 300 + 100
    kpts = centers[:, None] + (torch.rand(n, K, 2, generator=g) - 0.5) * 120
    boxes = torch.cat([kpts.min(1).values - 10, kpts.max(1).values + 10], -1)
    vis = torch.full((n, K), 2.0)
    return kpts, vis, boxes


def _oks_term(a, b, sigma, scale):
    d2 = ((a - b) ** 2).sum(-1)
    return torch.exp(-d2 / (2 * scale ** 2 * (2 * sigma) ** 2))


def test_jitter_is_small_and_in_the_oks_band():
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(500, 2) * 100
    sig = SIGMAS[torch.arange(500) % K]
    scale = torch.full((500,), 80.0)
    moved = jitter(pts, sig, scale, g)
    term = _oks_term(moved, pts, sig, scale)
    lo, hi = JITTER_OKS_RANGE
    assert (term >= lo - 1e-5).all() and (term <= hi + 1e-5).all()
    assert ((moved - pts).norm(dim=-1) > 0).all()


def test_miss_is_far_and_inside_the_box():
    g = torch.Generator().manual_seed(2)
    kpts, _, boxes = _people(50)
    person = torch.arange(50).repeat_interleave(K)
    kp = torch.arange(K).repeat(50)
    pts = kpts[person, kp]
    scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()[person]
    moved = miss(pts, SIGMAS[kp], scale, boxes[person], g)
    assert (_oks_term(moved, pts, SIGMAS[kp], scale) < MISS_MAX_OKS).all()
    b = boxes[person]
    inside = (moved[:, 0] >= b[:, 0]) & (moved[:, 0] <= b[:, 2]) & \
        (moved[:, 1] >= b[:, 1]) & (moved[:, 1] <= b[:, 3])
    assert inside.all()


def test_swap_exchanges_exactly_one_left_right_pair():
    kpts, _, _ = _people(2)
    pair = SCHEMA.flip_pairs[3]
    out = swap(kpts, torch.tensor([1]), torch.tensor([pair]))
    a, b = pair
    assert SCHEMA.keypoints[a].startswith("left_") and SCHEMA.keypoints[b].startswith("right_")
    assert torch.equal(out[1, a], kpts[1, b]) and torch.equal(out[1, b], kpts[1, a])
    changed = (out != kpts).any(-1)
    assert changed.sum() == 2 and changed[1, a] and changed[1, b]


def test_inversion_copies_another_keypoint_type():
    kpts, _, _ = _people(3)
    out = invert(kpts, torch.tensor([2]), torch.tensor([0]), torch.tensor([9]))
    assert torch.equal(out[2, 0], kpts[2, 9])
    assert ((out != kpts).any(-1)).sum() == 1


def test_composer_types_match_their_geometry():
    kpts, vis, boxes = _people(40)
    vis[0, 3:] = 0  # a person with few labelled keypoints
    g = torch.Generator().manual_seed(3)
    probs = ErrorProbs(jitter=0.3, miss=0.2, swap=0.2, inversion=0.2)
    noised, pinned, types = simulate_pose_errors(kpts, vis, boxes, SCHEMA, g, probs)
    # Pinned keypoints are exactly the ground truth, labelled, and at least one per pose.
    assert torch.equal(noised[pinned], kpts[pinned])
    assert (vis[pinned] > 0).all()
    assert (pinned.sum(1) >= 1).all()
    assert ((types == PoseError.PINNED) == pinned).all()
    assert (types[vis == 0] == PoseError.UNLABELLED).all()
    assert torch.equal(noised[types == PoseError.EXACT], kpts[types == PoseError.EXACT])
    # Every error type shows up and does what it says.
    for t in (PoseError.JITTER, PoseError.MISS, PoseError.SWAP, PoseError.INVERSION):
        assert (types == t).any(), t
    scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
    p, j = torch.nonzero(types == PoseError.JITTER, as_tuple=True)
    term = _oks_term(noised[p, j], kpts[p, j], SIGMAS[j], scale[p])
    assert (term >= JITTER_OKS_RANGE[0] - 1e-5).all() and (term <= JITTER_OKS_RANGE[1] + 1e-5).all()
    p, j = torch.nonzero(types == PoseError.MISS, as_tuple=True)
    assert (_oks_term(noised[p, j], kpts[p, j], SIGMAS[j], scale[p]) < MISS_MAX_OKS).all()
    flip = dict(SCHEMA.flip_pairs)
    flip.update({b: a for a, b in SCHEMA.flip_pairs})
    p, j = torch.nonzero(types == PoseError.SWAP, as_tuple=True)
    partner = torch.tensor([flip[int(x)] for x in j])
    assert torch.equal(noised[p, j], kpts[p, partner])
    assert (types[p, partner] == PoseError.SWAP).all()
    p, j = torch.nonzero(types == PoseError.INVERSION, as_tuple=True)
    for pi, ji in zip(p.tolist(), j.tolist()):
        same = (kpts[pi] == noised[pi, ji]).all(-1)
        same[ji] = False
        assert same.any(), "an inverted keypoint sits on another keypoint type of its person"


def test_num_pinned_follows_inverse_square():
    probs = num_pinned_probabilities(K)
    assert math.isclose(probs.sum().item(), 1.0, rel_tol=1e-9)
    assert math.isclose((probs[0] / probs[1]).item(), 4.0, rel_tol=1e-9)
    g = torch.Generator().manual_seed(4)
    n = 40000
    draws = sample_num_pinned(n, K, g)
    assert draws.min() >= 1 and draws.max() <= K
    counts = torch.bincount(draws, minlength=K + 1)[1:].double()
    expected = probs * n
    # Pool the tail so that every cell expects at least 5 draws (chi-square validity).
    keep = expected >= 5
    obs, exp = counts[keep], expected[keep]
    if (~keep).any():
        obs = torch.cat([obs, counts[~keep].sum(0, keepdim=True)])
        exp = torch.cat([exp, expected[~keep].sum(0, keepdim=True)])
    chi2 = (((obs - exp) ** 2) / exp).sum().item()
    dof = len(obs) - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof), (chi2, dof)
    # A uniform distribution is rejected by the same test.
    uni = torch.full((K,), n / K, dtype=torch.float64)
    chi2_uni = (((uni[keep] - expected[keep]) ** 2) / expected[keep]).sum().item()
    assert chi2_uni > 100 * (dof + 6 * math.sqrt(2 * dof))


def test_seeded_determinism():
    kpts, vis, boxes = _people(8)
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(7)
        runs.append(simulate_pose_errors(kpts, vis, boxes, SCHEMA, g))
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    other = simulate_pose_errors(kpts, vis, boxes, SCHEMA, torch.Generator().manual_seed(8))
    assert not torch.equal(runs[0][0], other[0])


def test_build_dn_queries_pads_and_keeps_pins_exact():
    kpts, vis, boxes = _people(3)
    size = torch.tensor([480, 640])  # h, w
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    targets = [
        {"boxes": boxes, "keypoints": torch.cat([kpts, vis[..., None]], -1), "area": area,
         "size": size},
        {"boxes": boxes[:1], "keypoints": torch.cat([kpts[:1], vis[:1, :, None]], -1),
         "area": area[:1], "size": size},
        {"boxes": torch.zeros(0, 4), "keypoints": torch.zeros(0, K, 3), "area": torch.zeros(0),
         "size": size},
    ]
    dn, meta = build_dn_queries(targets, SCHEMA, torch.Generator().manual_seed(0), num_groups=2)
    assert dn["boxes"].shape == (3, 6, 4) and dn["keypoints"].shape == (3, 6, K, 2)
    assert dn["valid"].sum(1).tolist() == [6, 2, 0]
    assert meta.target_index[0].tolist() == [0, 1, 2, 0, 1, 2]
    assert meta.target_index[1].tolist() == [0, 0, -1, -1, -1, -1]
    assert not dn["pinned"][~dn["valid"]].any()
    wh = torch.tensor([640.0, 480.0])
    b, q = torch.nonzero(dn["valid"], as_tuple=True)
    gt = kpts[meta.target_index[b, q]] / wh
    pin = dn["pinned"][b, q]
    assert torch.allclose(dn["keypoints"][b, q][pin], gt[pin])
    assert (dn["keypoints"] >= 0).all() and (dn["keypoints"] <= 1).all()
    assert build_dn_queries(targets[2:], SCHEMA, torch.Generator(), 2) == (None, None)


def test_error_probs_are_validated():
    with pytest.raises(ValueError, match="jitter"):
        ErrorProbs(jitter=0.8, miss=0.3)
