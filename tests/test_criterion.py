"""Set criterion: zero for perfect predictions, grows with error, gradients reach the outputs."""
import itertools

import torch

from clickpose.keypoints import coco17
from clickpose.model.criterion import SetCriterion, normalize_targets
from clickpose.model.pose_errors import build_dn_queries

SCHEMA = coco17()
K = SCHEMA.num_keypoints
SIZE = (240, 320)  # h, w


def _targets(seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in (2, 1):
        centers = torch.rand(n, 2, generator=g) * torch.tensor([200.0, 140.0]) + 60
        kpts = centers[:, None] + (torch.rand(n, K, 2, generator=g) - 0.5) * 80
        vis = torch.full((n, K, 1), 2.0)
        vis[0, :3] = 0
        kpts[0, :3] = 0  # unlabelled keypoints carry (0, 0) as in COCO
        lab = kpts[0, 3:]
        boxes = torch.cat([kpts.min(1).values, kpts.max(1).values], -1)
        boxes[0] = torch.cat([lab.min(0).values, lab.max(0).values])
        boxes = boxes + torch.tensor([-5.0, -5.0, 5.0, 5.0])
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) * 0.6
        out.append({"boxes": boxes, "keypoints": torch.cat([kpts, vis], -1), "area": area,
                    "size": torch.tensor(SIZE), "image_id": len(out)})
    return out


def _perfect_outputs(targets, queries=6, noise=0.0, seed=0):
    """Queries 0..n-1 are the ground truth (plus `noise`, normalized); the rest are empty."""
    g = torch.Generator().manual_seed(seed)
    tn = normalize_targets(targets)
    b = len(tn)
    logits = torch.full((b, queries, 1), -30.0)
    boxes = torch.tensor([0.5, 0.5, 0.1, 0.1]).repeat(b, queries, 1)
    kpts = torch.full((b, queries, K, 2), 0.5)
    vis = torch.full((b, queries, K), -30.0)
    for i, t in enumerate(tn):
        n = len(t["boxes"])
        logits[i, :n] = 30.0
        boxes[i, :n] = t["boxes"]
        kpts[i, :n] = t["keypoints"] + noise * torch.randn(n, K, 2, generator=g)
        vis[i, :n] = torch.where(t["keypoint_weights"] > 0, 30.0, -30.0)
    out = {"pred_logits": logits, "pred_boxes": boxes, "pred_keypoints": kpts,
           "pred_visibility": vis}
    return out


def _with_layers(out):
    full = dict(out)
    full["aux_outputs"] = [dict(out), dict(out)]
    full["human_aux_outputs"] = [{"pred_logits": out["pred_logits"], "pred_boxes": out["pred_boxes"]}]
    full["enc_outputs"] = {"pred_logits": out["pred_logits"], "pred_boxes": out["pred_boxes"]}
    return full


def test_perfect_predictions_have_zero_geometric_loss():
    targets = _targets()
    crit = SetCriterion(SCHEMA)
    losses = crit(_with_layers(_perfect_outputs(targets)), targets)
    for name, value in losses.items():
        if any(t in name for t in ("keypoints", "oks", "bbox")):
            assert value.item() == 0.0, name
        elif "giou" in name:
            assert abs(value.item()) < 1e-6, name
        else:  # focal person score and visibility BCE: tiny for confident right answers
            assert 0.0 <= value.item() < 1e-6, name
    assert {"loss_ce_aux1", "loss_oks_aux0", "loss_ce_human0", "loss_bbox_enc"} <= set(losses)


def test_loss_grows_with_keypoint_error():
    targets = _targets()
    crit = SetCriterion(SCHEMA)
    totals = []
    for noise in (0.0, 0.01, 0.03, 0.1):
        losses = crit(_perfect_outputs(targets, noise=noise), targets)
        totals.append((losses["loss_keypoints"].item(), losses["loss_oks"].item()))
    for (l1_a, oks_a), (l1_b, oks_b) in itertools.pairwise(totals):
        assert l1_b > l1_a and oks_b > oks_a


def test_unlabelled_keypoints_do_not_count():
    targets = _targets()
    out = _perfect_outputs(targets)
    out["pred_keypoints"][0, 0, :3] += 0.3  # person 0 of image 0: keypoints 0..2 are unlabelled
    out["pred_visibility"] = None
    losses = SetCriterion(SCHEMA)({k: v for k, v in out.items() if v is not None}, targets)
    assert losses["loss_keypoints"].item() == 0.0 and losses["loss_oks"].item() == 0.0


def test_wrong_person_score_is_penalised():
    targets = _targets()
    good = SetCriterion(SCHEMA)(_perfect_outputs(targets), targets)["loss_ce"].item()
    out = _perfect_outputs(targets)
    out["pred_logits"] = -out["pred_logits"]  # confident and wrong everywhere
    bad = SetCriterion(SCHEMA)(out, targets)["loss_ce"].item()
    assert bad > 100 * max(good, 1e-9) and bad > 1.0


def test_gradients_flow_to_every_output():
    targets = _targets()
    out = _perfect_outputs(targets, noise=0.05)
    out = {k: v.clone().requires_grad_(True) for k, v in out.items()}
    out["pred_boxes"].data[..., :2] += 0.02
    out["pred_logits"].data.zero_()  # unsure scores (saturated ones have no gradient)
    out["pred_visibility"].data.zero_()
    losses = SetCriterion(SCHEMA)(out, targets)
    sum(losses.values()).backward()
    for key in ("pred_logits", "pred_boxes", "pred_keypoints", "pred_visibility"):
        assert out[key].grad is not None and out[key].grad.abs().sum() > 0, key


def test_dn_losses_reconstruct_the_copied_pose():
    targets = _targets()
    dn, meta = build_dn_queries(targets, SCHEMA, torch.Generator().manual_seed(0), num_groups=2)
    tn = normalize_targets(targets)
    b, q = torch.nonzero(meta.target_index >= 0, as_tuple=True)
    gt_k = torch.zeros_like(dn["keypoints"])
    gt_b = torch.zeros_like(dn["boxes"])
    for bi, qi in zip(b.tolist(), q.tolist()):
        gt_k[bi, qi] = tn[bi]["keypoints"][meta.target_index[bi, qi]]
        gt_b[bi, qi] = tn[bi]["boxes"][meta.target_index[bi, qi]]
    crit = SetCriterion(SCHEMA)
    base = _perfect_outputs(targets)
    perfect = dict(base, dn={"pred_keypoints": gt_k, "pred_boxes": gt_b,
                             "pred_logits": torch.full(gt_b.shape[:2] + (1,), 30.0),
                             "aux_outputs": [{"pred_keypoints": gt_k}]})
    losses = crit(perfect, targets, dn_targets=meta)
    assert losses["loss_dn_keypoints"].item() == 0.0 and losses["loss_dn_oks"].item() == 0.0
    assert losses["loss_dn_bbox"].item() == 0.0 and "loss_dn_keypoints_aux0" in losses
    assert 0.0 <= losses["loss_dn_ce"].item() < 1e-6
    # The noised input itself is far from the truth: reconstructing nothing costs.
    lazy = dict(base, dn={"pred_keypoints": dn["keypoints"], "pred_boxes": dn["boxes"]})
    lazy_losses = crit(lazy, targets, dn_targets=meta)
    assert lazy_losses["loss_dn_keypoints"].item() > 0.1
    assert lazy_losses["loss_dn_oks"].item() > 0.1


def test_crowd_regions_are_not_negatives():
    targets = _targets()
    out = _perfect_outputs(targets)
    # An extra confident query (a person nobody labelled) sits inside a crowd region.
    out["pred_logits"][1, 3] = 5.0
    out["pred_boxes"][1, 3] = torch.tensor([0.2, 0.2, 0.05, 0.1])
    crit = SetCriterion(SCHEMA)
    penalised = crit(out, targets)["loss_ce"].item()
    targets[1]["crowd_boxes"] = torch.tensor([[32.0, 24.0, 96.0, 72.0]])  # pixels, around (64, 48)
    ignored = crit(out, targets)["loss_ce"].item()
    assert penalised > 1.0 and ignored < 1e-6


def test_varifocal_loss_is_lowest_where_the_score_equals_the_quality():
    from clickpose.model.criterion import varifocal_loss

    logits = torch.linspace(-6, 6, 241, requires_grad=True)
    for q in (0.2, 0.5, 0.9):
        loss = varifocal_loss(logits, torch.full_like(logits, q))
        best = torch.sigmoid(logits[loss.argmin()]).item()
        assert abs(best - q) < 0.02, q
    # A negative costs little when unsure, much when confident.
    negative = varifocal_loss(torch.tensor([-3.0, 0.0, 3.0]), torch.zeros(3))
    assert negative[0] < negative[1] < negative[2]


def test_oks_score_targets_follow_pose_quality():
    """With score_target 'oks', the better of two matched poses is taught the higher score;
    an unsure score on a perfect pose is pulled up, on a poor pose down."""
    targets = _targets()
    crit = SetCriterion(SCHEMA, score_target="oks")
    out = _perfect_outputs(targets)
    tn = normalize_targets(targets)
    out["pred_keypoints"][0, 1] = tn[0]["keypoints"][1] + 0.04   # image 0, person 1: poor pose
    out["pred_logits"] = torch.zeros_like(out["pred_logits"], requires_grad=True)
    indices = crit.match(out, tn, normalized=True)
    oks = crit.matched_keypoint_losses(out, tn, indices, 1.0)[1]
    by_query = dict(zip(indices[0][0].tolist(), oks[:len(indices[0][0])].tolist()))
    assert by_query[0] > 0.99 and by_query[1] < 0.5
    crit(out, targets)["loss_ce"].backward()
    grad = out["pred_logits"].grad[0, :2, 0]
    assert grad[0] < 0 < grad[1]   # descent raises the perfect pose's score, lowers the poor one's
    try:
        SetCriterion(SCHEMA, score_target="iou")
    except ValueError as e:
        assert "score_target 'iou' is unknown" in str(e)
    else:
        raise AssertionError("an unknown score_target was accepted")
