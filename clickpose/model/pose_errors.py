"""Pose error modeling: noised copies of ground-truth poses that the keypoint decoder must repair.

The four error types (in pixels, on ground-truth poses):
- jitter: a small offset; the keypoint's OKS term exp(-d^2 / (2 s^2 (2 sigma)^2)) lands in
  [0.5, 0.85], so the size of the offset follows the person scale s = sqrt(area) and the
  keypoint's OKS sigma, as the COCO error taxonomy defines a jitter;
- miss: the keypoint moved far (OKS term below 0.5) to somewhere inside the person's box;
- swap: a left/right pair (schema.flip_pairs) exchanged;
- inversion: a keypoint takes the location of another keypoint type of the same person.
Some keypoints of each noised pose stay exact and *pinned* (they stand for clicks): their
number k is drawn with P(k) ~ 1/k^2 over k = 1..K, as the official Click-Pose code does.

Every function takes an explicit torch.Generator: the same seed gives the same errors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import torch
from torch import Tensor

from clickpose.keypoints import KeypointSchema
from clickpose.model.losses import box_xyxy_to_cxcywh

JITTER_OKS_RANGE = (0.5, 0.85)
MISS_MAX_OKS = 0.5


class PoseError(IntEnum):
    EXACT = 0       # left at the ground truth, not pinned
    PINNED = 1      # exact and pinned (a simulated click)
    JITTER = 2
    MISS = 3
    SWAP = 4
    INVERSION = 5
    UNLABELLED = 6  # no ground truth: a random guess inside the box


@dataclass(frozen=True)
class ErrorProbs:
    """Per-keypoint chances of each error (swap: per flip pair); the rest stays exact."""
    jitter: float = 0.5
    miss: float = 0.15
    swap: float = 0.1
    inversion: float = 0.1

    def __post_init__(self) -> None:
        if min(self.jitter, self.miss, self.swap, self.inversion) < 0:
            raise ValueError(f"ErrorProbs: probabilities must be >= 0, got {self}")
        if self.jitter + self.miss + self.inversion > 1:
            raise ValueError(f"ErrorProbs: jitter + miss + inversion must be <= 1, got {self}")


def _rand(n: int, generator: torch.Generator) -> Tensor:
    return torch.rand(n, generator=generator)


def _oks_distance(sigmas: Tensor, person_scale: Tensor, oks_term: Tensor) -> Tensor:
    """The pixel distance at which a keypoint's OKS term equals `oks_term`."""
    return 2 * sigmas * person_scale * torch.sqrt(2 * torch.log(1 / oks_term))


def person_scales(boxes: Tensor, areas: Tensor | None = None) -> Tensor:
    """sqrt(area) in pixels, the OKS scale; the box area stands in where no area is given."""
    box_area = (boxes[:, 2] - boxes[:, 0]).clamp(min=1) * (boxes[:, 3] - boxes[:, 1]).clamp(min=1)
    if areas is None:
        return box_area.sqrt()
    areas = areas.to(box_area.dtype)
    return torch.where(areas > 0, areas, box_area).sqrt()


def jitter(points: Tensor, sigmas: Tensor, person_scale: Tensor,
           generator: torch.Generator) -> Tensor:
    """Move each point (M, 2) by a small offset: OKS term uniform in JITTER_OKS_RANGE."""
    m = len(points)
    lo, hi = JITTER_OKS_RANGE
    term = lo + (hi - lo) * _rand(m, generator)
    dist = _oks_distance(sigmas, person_scale, term)
    angle = 2 * math.pi * _rand(m, generator)
    return points + dist[:, None] * torch.stack([angle.cos(), angle.sin()], -1)


def miss(points: Tensor, sigmas: Tensor, person_scale: Tensor, boxes: Tensor,
         generator: torch.Generator, tries: int = 32) -> Tensor:
    """Move each point (M, 2) far (OKS term < MISS_MAX_OKS) to a place inside its box (M, 4).

    Rejection sampling inside the box; where no try lands far enough (a box barely larger
    than the keypoint's tolerance) the box corner farthest from the point is used.
    """
    min_dist = _oks_distance(sigmas, person_scale, torch.full_like(sigmas, MISS_MAX_OKS))
    lo, size = boxes[:, :2], (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
    corners = torch.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [0, 3]], boxes[:, [2, 3]]], 1)
    far = (corners - points[:, None]).norm(dim=-1).argmax(1)
    fallback = corners[torch.arange(len(points)), far]
    # All tries drawn at once (the same numbers, in the same order, as one try at a time);
    # each point takes its first candidate that lands far enough.
    candidates = lo + size * torch.rand(tries, len(points), 2, generator=generator)
    far_enough = (candidates - points).norm(dim=-1) > min_dist          # (tries, M)
    first = far_enough.int().argmax(0)
    chosen = candidates[first, torch.arange(len(points))]
    return torch.where(far_enough.any(0)[:, None], chosen, fallback)


def swap(keypoints: Tensor, person: Tensor, pairs: Tensor) -> Tensor:
    """Exchange keypoints pairs[:, 0] and pairs[:, 1] of the given persons: (N, K, 2) -> copy."""
    out = keypoints.clone()
    a, b = pairs[:, 0], pairs[:, 1]
    out[person, a], out[person, b] = keypoints[person, b], keypoints[person, a]
    return out


def invert(keypoints: Tensor, person: Tensor, keypoint: Tensor, source: Tensor) -> Tensor:
    """Keypoint `keypoint` of `person` takes the place of that person's keypoint `source`."""
    out = keypoints.clone()
    out[person, keypoint] = keypoints[person, source]
    return out


def num_pinned_probabilities(num_keypoints: int) -> Tensor:
    """P(k) for k = 1..K, proportional to 1 / k^2."""
    k = torch.arange(1, num_keypoints + 1, dtype=torch.float64)
    p = 1.0 / k ** 2
    return p / p.sum()


def sample_num_pinned(n: int, num_keypoints: int, generator: torch.Generator) -> Tensor:
    """n draws of k in 1..K with P(k) ~ 1/k^2: (n,) int64."""
    probs = num_pinned_probabilities(num_keypoints)
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    return torch.multinomial(probs, n, replacement=True, generator=generator) + 1


def choose_pinned(labelled: Tensor, k: Tensor, generator: torch.Generator) -> Tensor:
    """k[i] random labelled keypoints of each pose (fewer when fewer are labelled): (N, K) bool."""
    n, num_k = labelled.shape
    score = torch.rand(n, num_k, generator=generator) + (~labelled).float() * 2
    rank = score.argsort(1).argsort(1)
    return labelled & (rank < k[:, None])


def simulate_pose_errors(keypoints: Tensor, visibility: Tensor, boxes: Tensor,
                         schema: KeypointSchema, generator: torch.Generator,
                         probs: ErrorProbs = ErrorProbs(), areas: Tensor | None = None,
                         ) -> tuple[Tensor, Tensor, Tensor]:
    """Noised copies of ground-truth poses.

    keypoints (N, K, 2) pixels, visibility (N, K) COCO v, boxes (N, 4) xyxy pixels, areas (N,)
    pixel^2 or None. Returns noised (N, K, 2), pinned (N, K) bool (exactly the ground truth)
    and error_types (N, K) int64 (PoseError).
    """
    keypoints = keypoints.float()
    boxes = boxes.float()
    n, num_k = keypoints.shape[:2]
    labelled = visibility > 0
    sigmas = torch.as_tensor(schema.sigmas, dtype=torch.float32)
    scale = person_scales(boxes, areas)
    noised = keypoints.clone()
    types = torch.full((n, num_k), int(PoseError.EXACT), dtype=torch.int64)

    pinned = choose_pinned(labelled, sample_num_pinned(n, num_k, generator), generator)
    types[pinned] = PoseError.PINNED

    # Unlabelled keypoints have no truth to keep: a random guess inside the box.
    p, j = torch.nonzero(~labelled, as_tuple=True)
    lo, size = boxes[p, :2], (boxes[p, 2:] - boxes[p, :2]).clamp(min=0)
    noised[p, j] = lo + size * torch.rand(len(p), 2, generator=generator)
    types[p, j] = PoseError.UNLABELLED

    free = labelled & ~pinned
    if schema.flip_pairs:
        pairs = torch.as_tensor(schema.flip_pairs, dtype=torch.int64)  # (F, 2)
        can = free[:, pairs[:, 0]] & free[:, pairs[:, 1]]  # (N, F)
        do = can & (torch.rand(can.shape, generator=generator) < probs.swap)
        person, pair = torch.nonzero(do, as_tuple=True)
        noised = swap(noised, person, pairs[pair])
        for col in (0, 1):
            types[person, pairs[pair, col]] = PoseError.SWAP
            free[person, pairs[pair, col]] = False

    u = torch.rand(n, num_k, generator=generator)
    inv = free & (u < probs.inversion)
    mis = free & ~inv & (u < probs.inversion + probs.miss)
    jit = free & ~inv & ~mis & (u < probs.inversion + probs.miss + probs.jitter)

    # Inversion: the source is another labelled keypoint of the same person.
    p, j = torch.nonzero(inv, as_tuple=True)
    others = labelled[p].clone()
    others[torch.arange(len(p)), j] = False
    has_other = others.any(1)
    src = torch.multinomial(others[has_other].float(), 1, generator=generator)[:, 0] \
        if has_other.any() else torch.zeros(0, dtype=torch.int64)
    # The source location is read from the ground truth, not from a swapped copy.
    p_inv, j_inv = p[has_other], j[has_other]
    noised[p_inv, j_inv] = invert(keypoints, p_inv, j_inv, src)[p_inv, j_inv]
    types[p[has_other], j[has_other]] = PoseError.INVERSION
    jit[p[~has_other], j[~has_other]] = True  # nothing to invert with: a jitter instead

    p, j = torch.nonzero(mis, as_tuple=True)
    noised[p, j] = miss(keypoints[p, j], sigmas[j], scale[p], boxes[p], generator)
    types[p, j] = PoseError.MISS

    p, j = torch.nonzero(jit, as_tuple=True)
    noised[p, j] = jitter(keypoints[p, j], sigmas[j], scale[p], generator)
    types[p, j] = PoseError.JITTER
    return noised, pinned, types


def noise_boxes(boxes: Tensor, scale: float, generator: torch.Generator) -> Tensor:
    """DINO-style box noise on normalized cxcywh boxes (N, 4): center moves up to scale * w/2,
    size changes up to scale * w; clamped to the image."""
    diff = torch.cat([boxes[:, 2:] / 2, boxes[:, 2:]], 1)
    noise = (torch.rand(boxes.shape, generator=generator) * 2 - 1) * diff * scale
    out = boxes + noise
    out[:, 2:] = out[:, 2:].clamp(min=1e-3)
    return out.clamp(0.0, 1.0)


@dataclass
class DnTargets:
    """Which ground-truth person each denoising query copies (-1: padding), for the losses."""
    target_index: Tensor  # (B, D) int64
    error_types: Tensor   # (B, D, K) int64 PoseError
    num_groups: int


def build_dn_queries(targets: list[dict], schema: KeypointSchema, generator: torch.Generator,
                     num_groups: int, probs: ErrorProbs = ErrorProbs(),
                     box_noise_scale: float = 0.4) -> tuple[dict | None, DnTargets | None]:
    """Denoising queries for a batch: `num_groups` noised copies of every ground-truth pose.

    targets: the collated pixel targets (boxes xyxy, keypoints (N, K, 3), area, size (h, w)).
    Returns the model's `dn` input (boxes (B, D, 4) cxcywh normalized, keypoints (B, D, K, 2)
    normalized, pinned (B, D, K), valid (B, D)), on the targets' device, and the DnTargets
    bookkeeping; (None, None) when the batch has no person.
    """
    num_k = schema.num_keypoints
    counts = torch.tensor([len(t["boxes"]) for t in targets], dtype=torch.int64)
    d = int(counts.max()) * num_groups if len(targets) else 0
    if d == 0 or num_groups <= 0:
        return None, None
    device = targets[0]["boxes"].device
    bsz = len(targets)
    boxes = torch.zeros(bsz, d, 4)
    boxes[..., 2:] = 0.1  # padding queries: a harmless small box
    kpts = torch.zeros(bsz, d, num_k, 2)
    pinned = torch.zeros(bsz, d, num_k, dtype=torch.bool)
    valid = torch.zeros(bsz, d, dtype=torch.bool)
    index = torch.full((bsz, d), -1, dtype=torch.int64)
    types = torch.zeros(bsz, d, num_k, dtype=torch.int64)
    # Every person of the batch is noised in one call (one host round trip per batch, not
    # one per image): image (G,), its slot among the image's persons, its image's (w, h).
    image = torch.repeat_interleave(torch.arange(bsz), counts)
    slot = torch.cat([torch.arange(int(n)) for n in counts])
    gt_boxes = torch.cat([t["boxes"].detach().float() for t in targets]).cpu()
    gt_kpts = torch.cat([t["keypoints"].detach().float() for t in targets]).cpu()
    area = (torch.cat([t["area"].detach().float() for t in targets]).cpu()
            if all("area" in t for t in targets) else None)
    sizes = torch.tensor([[float(t["size"][1]), float(t["size"][0])] for t in targets])
    whwh = sizes.repeat(1, 2)[image]                                           # (G, 4)
    gt_cxcywh = box_xyxy_to_cxcywh(gt_boxes) / whwh
    for g in range(num_groups):
        noised, pin, err = simulate_pose_errors(gt_kpts[..., :2], gt_kpts[..., 2], gt_boxes,
                                                schema, generator, probs, area)
        query = g * counts[image] + slot
        boxes[image, query] = noise_boxes(gt_cxcywh, box_noise_scale, generator)
        norm = noised / whwh[:, None, :2]
        kpts[image, query] = torch.where(pin[..., None], norm, norm.clamp(0.0, 1.0))
        pinned[image, query] = pin
        types[image, query] = err
        valid[image, query] = True
        index[image, query] = slot
    dn = {"boxes": boxes.to(device), "keypoints": kpts.to(device), "pinned": pinned.to(device),
          "valid": valid.to(device)}
    return dn, DnTargets(index.to(device), types.to(device), num_groups)
