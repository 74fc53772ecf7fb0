"""The learned pose quality: its target is each pose's OKS as COCO AP counts it (a duplicate
of a person ranked above it learns 0), it never pulls on the poses it judges, it learns to
tell a good pose from a bad one, and a model that has it ranks its persons by it, clicked
persons above their duplicates."""
import numpy as np
import torch

from clickpose.keypoints import coco17
from clickpose.model import build_model, preset_config
from clickpose.model.criterion import SetCriterion
from clickpose.model.matcher import PaddedTargets
from clickpose.model.pose_quality import (
    PoseQualityHead,
    overlap_above,
    quality_loss,
    quality_targets,
)
from clickpose.train.engine import StepOptions, clip_gradients, compute_losses

K = 3
SIGMAS = torch.full((K,), 0.08)


def _padded(persons, scale=(100.0, 100.0), area=400.0):
    """One image's PaddedTargets with persons' (G, K, 2) normalized keypoints."""
    kpts = torch.tensor(persons, dtype=torch.float32).view(1, -1, K, 2)
    g = kpts.shape[1]
    return PaddedTargets(boxes=torch.full((1, g, 4), 0.5), keypoints=kpts,
                         keypoint_weights=torch.ones(1, g, K), area=torch.full((1, g), area),
                         scale=torch.tensor([scale]), counts=[g])


def test_target_is_the_oks_with_the_best_fitting_person():
    a = [[0.2, 0.2], [0.25, 0.3], [0.2, 0.4]]
    b = [[0.7, 0.2], [0.75, 0.3], [0.7, 0.4]]
    padded = _padded([a, b])
    near_b = torch.tensor(b) + torch.tensor([0.02, 0.0])                  # 2 px off
    far = torch.tensor([[0.45, 0.9]] * K)
    preds = torch.stack([torch.tensor(a), near_b, far])[None]              # (1, 3, K, 2)
    target = quality_targets(preds, padded, SIGMAS)
    # OKS of a 2-pixel error at area 400, sigma 0.08: exp(-4 / (2 * 400 * 0.16^2)).
    expected_near = torch.exp(torch.tensor(-4.0 / (2 * 400 * 0.16 ** 2)))
    assert torch.allclose(target[0, 0], torch.tensor(1.0))
    assert torch.allclose(target[0, 1], expected_near, atol=1e-5)
    assert target[0, 2] < 1e-6


def test_a_duplicate_of_a_person_ranked_above_learns_zero():
    a = [[0.2, 0.2], [0.25, 0.3], [0.2, 0.4]]
    padded = _padded([a])
    preds = torch.stack([torch.tensor(a), torch.tensor(a) + 0.005])[None]  # the second: 0.5 px off
    logits = torch.tensor([[[2.0], [1.0]]])
    target = quality_targets(preds, padded, SIGMAS, logits)
    assert torch.allclose(target[0, 0], torch.tensor(1.0)) and target[0, 1] == 0
    # Ranked the other way round, the near-copy takes the person and the exact pose is the
    # duplicate; without logits, both keep their OKS.
    swapped = quality_targets(preds, padded, SIGMAS, logits.flip(1))
    assert swapped[0, 0] == 0 and swapped[0, 1] > 0.9
    assert (quality_targets(preds, padded, SIGMAS) > 0.9).all()


def test_a_poor_pose_ranked_first_leaves_the_person_to_a_good_one():
    """A pose under OKS 0.5 is no match in AP: it keeps its own (low) OKS as its target, and
    a good pose ranked below it still learns its OKS."""
    a = [[0.2, 0.2], [0.25, 0.3], [0.2, 0.4]]
    padded = _padded([a])
    poor = torch.tensor(a) + torch.tensor([0.05, 0.0])   # 5 px off: OKS ~ 0.3
    preds = torch.stack([poor, torch.tensor(a)])[None]
    target = quality_targets(preds, padded, SIGMAS, torch.tensor([[[3.0], [0.0]]]))
    assert 0.2 < target[0, 0] < 0.5
    assert torch.allclose(target[0, 1], torch.tensor(1.0))


def test_overlap_is_with_persons_ranked_above_clicked_ones_first():
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1]]])
    logits = torch.tensor([[[2.0], [1.0], [3.0]]])
    assert torch.allclose(overlap_above(boxes, logits), torch.tensor([[0.0, 1.0, 0.0]]))
    clicked = torch.tensor([[False, True, False]])  # the lower-ranked copy was clicked
    assert torch.allclose(overlap_above(boxes, logits, clicked), torch.tensor([[1.0, 0.0, 0.0]]))
    assert overlap_above(torch.zeros(1, 0, 4), torch.zeros(1, 0, 1)).shape == (1, 0)


def test_target_without_persons_is_zero():
    padded = PaddedTargets(torch.zeros(1, 0, 4), torch.zeros(1, 0, K, 2), torch.zeros(1, 0, K),
                           torch.ones(1, 0), torch.tensor([[100.0, 100.0]]), [0])
    assert torch.equal(quality_targets(torch.rand(1, 2, K, 2), padded, SIGMAS), torch.zeros(1, 2))


def _inputs(keypoints):
    n = keypoints.shape[1]
    return (torch.zeros(1, n, 1, requires_grad=True), torch.tensor([[[0.5, 0.5, 0.4, 0.6]] * n]),
            keypoints, torch.zeros(1, n, K, requires_grad=True), torch.full((1, n, K), 0.5))


def test_head_never_pulls_on_the_poses_it_judges():
    keypoints = torch.rand(1, 2, K, 2, requires_grad=True)
    logits, boxes, _, visibility, support = _inputs(keypoints)
    PoseQualityHead(K)(logits, boxes, keypoints, visibility, support).sum().backward()
    assert keypoints.grad is None and logits.grad is None and visibility.grad is None


def test_an_untrained_head_calls_every_pose_poor():
    """A young model then offers no persons above the annotator's cut instead of all."""
    torch.manual_seed(0)
    keypoints = torch.rand(1, 30, K, 2)
    assert (PoseQualityHead(K)(*_inputs(keypoints)).sigmoid() < 0.2).all()  # the cut: 0.3


def test_head_learns_to_tell_a_good_pose_from_a_bad_one():
    """Poses near the ground truth and poses scattered at random, seen through the same
    features the model gives it: after training, the good poses score higher."""
    torch.manual_seed(0)
    truth = torch.tensor([[0.5, 0.3], [0.45, 0.5], [0.55, 0.7]])
    padded = _padded([truth.tolist()], area=2400.0)
    head = PoseQualityHead(K, hidden_dim=32)
    optimizer = torch.optim.Adam(head.parameters(), 1e-2)
    for _ in range(150):
        good = truth + torch.randn(8, K, 2) * 0.01
        bad = torch.rand(8, K, 2)
        keypoints = torch.cat([good, bad])[None]
        loss = quality_loss(head(*_inputs(keypoints)), keypoints, padded, SIGMAS)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    good = (truth + torch.randn(20, K, 2) * 0.01)[None]
    bad = torch.rand(1, 20, K, 2)
    with torch.no_grad():
        score_good = head(*_inputs(good)).sigmoid()
        score_bad = head(*_inputs(bad)).sigmoid()
    assert score_good.mean() > score_bad.mean() + 0.5


def test_model_learns_its_quality_in_training_and_ranks_by_it():
    torch.manual_seed(0)
    schema = coco17()
    model = build_model(preset_config("tiny", backbone_weights="none"), schema)
    assert model.pose_quality is not None
    images, mask = torch.randn(1, 3, 128, 128), torch.zeros(1, 128, 128, dtype=torch.bool)
    kpts = torch.cat([torch.rand(1, 17, 2) * 60 + 30, torch.full((1, 17, 1), 2.0)], -1)
    targets = [{"boxes": torch.tensor([[30.0, 30.0, 90.0, 90.0]]), "keypoints": kpts,
                "area": torch.tensor([3600.0]), "labels": torch.zeros(1, dtype=torch.int64),
                "iscrowd": torch.zeros(1, dtype=torch.int64),
                "size": torch.tensor([128, 128]), "orig_size": torch.tensor([128, 128]),
                "image_id": torch.tensor(1)}]
    model.train()
    losses = compute_losses(model, SetCriterion(schema), images, mask, targets, schema,
                            torch.Generator().manual_seed(0), StepOptions(dn_groups=0))
    assert "loss_quality" in losses and torch.isfinite(losses["loss_quality"])
    # The head learns from its loss; the poses it reads are detached: nothing else moves.
    losses["loss_quality"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.pose_quality.parameters())
    assert all(p.grad is None or not p.grad.any()
               for name, p in model.named_parameters() if not name.startswith("pose_quality."))
    model.eval()
    with torch.no_grad():
        outputs = model(images, mask)
        state = model.encode(images, mask)
        expected = model.quality_logits(state, outputs).sigmoid()
    assert torch.allclose(outputs["pred_scores"], expected)
    poses = model.postprocess(outputs, [(128, 128)])[0]
    kept = expected[0].sort(descending=True).values[:poses.num_persons]
    assert np.allclose(poses.scores, kept.numpy(), atol=1e-6)


def test_clicked_persons_are_scored_as_ranked_above_the_others():
    torch.manual_seed(0)
    model = build_model(preset_config("tiny", backbone_weights="none"), coco17()).eval()
    images, mask = torch.randn(1, 3, 128, 128), torch.zeros(1, 128, 128, dtype=torch.bool)
    with torch.no_grad():
        state = model.encode(images, mask)
        humans = model.detect_humans(state)
        humans.boxes[0, -1] = humans.boxes[0, 0]   # two persons in one box
        first = model.decode_keypoints(state, humans)
        # Click the one of the pair that its logit ranks below the other: by logits it is the
        # duplicate; clicked, it must rank above its twin.
        for person in (-1, 0):
            pinned = torch.zeros(first["pred_keypoints"].shape[:3], dtype=torch.bool)
            pinned[0, person, 0] = True
            clicked = model.decode_keypoints(state, humans, first["pred_keypoints"], pinned)
            by_logit = overlap_above(clicked["pred_boxes"], clicked["pred_logits"])
            if by_logit[0, person] > 0.9:
                break
        twin = 0 if person == -1 else -1
        expected = model.quality_logits(state, clicked, first=pinned.any(-1)).sigmoid()
        logit_rule = model.quality_logits(state, clicked).sigmoid()
        overlap = overlap_above(clicked["pred_boxes"], clicked["pred_logits"], pinned.any(-1))
    assert by_logit[0, person] > 0.9 and by_logit[0, twin] == 0
    assert torch.allclose(clicked["pred_scores"], expected)
    assert overlap[0, person] == 0 and overlap[0, twin] > 0.9
    assert not torch.allclose(clicked["pred_scores"][0, person], logit_rule[0, person])


def test_the_head_leaves_the_rest_of_a_run_as_it_was():
    """Building it draws from its own random stream, and its gradients are clipped apart
    from the network's: the network's clipped gradients are those of a model without it."""
    schema = coco17()
    streams = {}
    for quality in (False, True):
        torch.manual_seed(0)
        build_model(preset_config("tiny", backbone_weights="none", pose_quality=quality), schema)
        streams[quality] = torch.rand(4)
    assert torch.equal(streams[False], streams[True])

    torch.manual_seed(0)
    model = build_model(preset_config("tiny", backbone_weights="none"), schema)
    network = [p for p in model.parameters() if p.requires_grad]
    for p in network:
        p.grad = torch.ones_like(p)
    for p in model.pose_quality.parameters():
        p.grad = torch.full_like(p, 100.0)  # far larger than the network's
    clip_gradients(model, 0.1)
    network_norm = torch.stack([p.grad.norm() for p in network
                                if not any(p is q for q in model.pose_quality.parameters())]).norm()
    head_norm = torch.stack([p.grad.norm() for p in model.pose_quality.parameters()]).norm()
    assert torch.allclose(network_norm, torch.tensor(0.1), atol=1e-5)
    assert torch.allclose(head_norm, torch.tensor(0.1), atol=1e-5)
