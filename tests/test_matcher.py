"""Hungarian matcher on hand-made cases with known assignments."""
import torch

from clickpose.keypoints import coco17
from clickpose.model.criterion import normalize_targets
from clickpose.model.matcher import HungarianMatcher, PaddedTargets

SCHEMA = coco17()
K = SCHEMA.num_keypoints


def _pose(cx, cy, spread=20.0):
    """A pixel pose: K points on a small circle around (cx, cy)."""
    angles = torch.linspace(0, 6.0, K)
    return torch.stack([cx + spread * angles.cos(), cy + spread * angles.sin()], -1)


def _target(poses, size=(200, 400), vis=None):
    h, w = size
    kpts = torch.stack(poses) if poses else torch.zeros(0, K, 2)
    v = torch.full(kpts.shape[:2], 2.0) if vis is None else vis
    boxes = torch.cat([kpts.min(1).values - 5, kpts.max(1).values + 5], -1) if poses \
        else torch.zeros(0, 4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return {"boxes": boxes, "keypoints": torch.cat([kpts, v[..., None]], -1), "area": area,
            "size": torch.tensor([h, w]), "image_id": 1}


def _outputs(poses, size=(200, 400), logits=None):
    h, w = size
    kpts = torch.stack(poses)[None] / torch.tensor([w, h])
    boxes = torch.cat([kpts.min(2).values, kpts.max(2).values], -1)
    cxcywh = torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)
    n = kpts.shape[1]
    logit = torch.zeros(1, n, 1) if logits is None else torch.tensor(logits).view(1, n, 1)
    return {"pred_logits": logit, "pred_boxes": cxcywh, "pred_keypoints": kpts}


def _match(outputs, targets, **kw):
    return HungarianMatcher(SCHEMA.sigmas, **kw)(outputs, normalize_targets(targets))


def test_permuted_predictions_are_matched_back():
    gts = [_pose(50, 50), _pose(200, 100), _pose(330, 150)]
    order = [2, 0, 1]
    out = _outputs([gts[i] + 1.5 for i in order])
    (src, tgt), = _match(out, [_target(gts)])
    assignment = dict(zip(src.tolist(), tgt.tolist()))
    assert assignment == {0: 2, 1: 0, 2: 1}


def test_fewer_predictions_than_ground_truth():
    gts = [_pose(50, 50), _pose(200, 100), _pose(330, 150)]
    out = _outputs([gts[1] + 2.0, gts[2] - 1.0])
    (src, tgt), = _match(out, [_target(gts)])
    assert sorted(zip(src.tolist(), tgt.tolist())) == [(0, 1), (1, 2)]


def test_zero_ground_truth_gives_empty_match():
    out = _outputs([_pose(50, 50), _pose(100, 100)])
    (src, tgt), = _match(out, [_target([])])
    assert len(src) == 0 and len(tgt) == 0


def test_visibility_weights_ignore_unlabelled_keypoints():
    gt = _pose(100, 100)
    vis = torch.zeros(1, K)
    vis[0, :5] = 2  # only the first five keypoints are labelled
    near_labelled = gt.clone()
    near_labelled[5:] += 150.0  # far off, but only where nothing is labelled
    uniform = gt + 6.0  # every keypoint a little off
    out = _outputs([uniform, near_labelled])
    (src, _), = _match(out, [_target([gt], vis=vis)])
    assert src.tolist() == [1]
    # With all keypoints labelled, the uniformly-close prediction wins instead.
    (src, _), = _match(out, [_target([gt])])
    assert src.tolist() == [0]


def test_person_score_breaks_ties_between_identical_poses():
    gt = _pose(100, 100)
    out = _outputs([gt + 1.0, gt + 1.0], logits=[-4.0, 4.0])
    (src, _), = _match(out, [_target([gt])])
    assert src.tolist() == [1]


def test_box_costs_match_outputs_without_keypoints():
    gts = [_pose(50, 50), _pose(300, 120)]
    out = _outputs([gts[1] + 1, gts[0] - 1])
    del out["pred_keypoints"]
    (src, tgt), = _match(out, [_target(gts)])
    assert dict(zip(src.tolist(), tgt.tolist())) == {0: 1, 1: 0}


def test_batch_of_two_images_matches_each_separately():
    a, b = [_pose(60, 60)], [_pose(100, 80), _pose(300, 120)]
    out_a, out_b = _outputs([a[0] + 1, a[0] + 90]), _outputs([b[1] + 1, b[0] + 1])
    out = {k: torch.cat([out_a[k], out_b[k]]) for k in out_a}
    (s0, t0), (s1, t1) = _match(out, [_target(a), _target(b)])
    assert list(zip(s0.tolist(), t0.tolist())) == [(0, 0)]
    assert dict(zip(s1.tolist(), t1.tolist())) == {0: 1, 1: 0}


def test_box_only_person_is_matched_by_its_box():
    gts = [_pose(80, 60), _pose(300, 140)]
    vis = torch.full((2, K), 2.0)
    vis[1] = 0  # person 1 is annotated with a box only
    # Query 2 is elsewhere but a little more confident: without the box, it would win person 1.
    out = _outputs([gts[1] + 1.0, gts[0] + 1.0, _pose(200, 60)], logits=[0.0, 0.0, 1.0])
    (src, tgt), = _match(out, [_target(gts, vis=vis)])
    assert dict(zip(src.tolist(), tgt.tolist())) == {0: 1, 1: 0}
    (src, tgt), = _match(out, [_target(gts, vis=vis)], cost_bbox=0.0, cost_giou=0.0)
    assert dict(zip(src.tolist(), tgt.tolist())) == {2: 1, 1: 0}


def test_batched_costs_equal_each_image_costed_alone():
    # Images with 2, 0 and 3 persons (one of them box-only): padding to the batch's largest
    # person count must change no image's cost block, nor its assignment.
    torch.manual_seed(0)
    poses = [[_pose(60, 50), _pose(300, 120)], [], [_pose(80, 60), _pose(200, 90), _pose(330, 150)]]
    vis = torch.full((3, K), 2.0)
    vis[1] = 0
    targets = normalize_targets([_target(poses[0]), _target([]), _target(poses[2], vis=vis)])
    outputs = {"pred_logits": torch.randn(3, 6, 1), "pred_boxes": torch.rand(3, 6, 4) * 0.5 + 0.2,
               "pred_keypoints": torch.rand(3, 6, K, 2)}
    matcher = HungarianMatcher(SCHEMA.sigmas)
    costs = matcher.batch_costs(outputs, PaddedTargets.of(targets))
    assert costs.shape == (3, 6, 3)
    for b, target in enumerate(targets):
        alone = matcher.cost_matrix(outputs, b, target)
        assert alone.shape == (6, len(target["boxes"]))
        assert torch.allclose(costs[b, :, :len(target["boxes"])], alone, atol=1e-5)
    indices = matcher(outputs, targets)
    for b, (src, tgt) in enumerate(indices):
        one = {k: v[b:b + 1] for k, v in outputs.items()}
        (src1, tgt1), = matcher(one, [targets[b]])
        assert torch.equal(src, src1) and torch.equal(tgt, tgt1)
    assert [len(s) for s, _ in indices] == [2, 0, 3]
