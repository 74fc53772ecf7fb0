"""Training objective of Click-Pose: set losses on Hungarian-matched predictions.

For every output that carries a person score: a sigmoid focal loss on it, box L1 + GIoU on
matched persons; for keypoint decoder outputs also keypoint L1 and OKS losses (weighted by
the labelled keypoints, v > 0) and a visibility BCE. The same terms apply to every earlier
decoder layer (`aux_outputs`: keypoint decoder, `human_aux_outputs`: human detection), to
the two-stage encoder proposals (`enc_outputs`) and, without matching, to the denoising
(pose error modeling) queries, which must rebuild the pose they were noised from.
Weights default to the official Click-Pose configuration.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clickpose.keypoints import KeypointSchema
from clickpose.model.heatmap_loss import heatmap_focal_loss, offset_l1_loss
from clickpose.model.losses import (
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    keypoint_l1,
    oks_similarity,
    sigmoid_focal_loss,
)
from clickpose.model.matcher import HungarianMatcher, PaddedTargets
from clickpose.model.pose_errors import DnTargets
from clickpose.model.pose_quality import quality_loss

SCORE_TARGETS = ("match", "oks")
VARIFOCAL_ALPHA = 0.75   # VarifocalNet's weight of the negatives


@dataclass
class LossWeights:
    ce: float = 2.0
    bbox: float = 5.0
    giou: float = 2.0
    keypoints: float = 10.0
    oks: float = 4.0
    vis: float = 1.0
    enc: float = 1.0   # multiplies the encoder-proposal terms
    dn: float = 0.5    # multiplies the denoising terms (official dn_bbox_coef / dn_keypoints_coef)
    feedback: float = 1.0  # multiplies the human-feedback round terms
    heatmap: float = 1.0   # keypoint heatmaps (clickpose.model.keypoint_heatmap)
    offsets: float = 1.0   # their sub-cell offsets, L1 in cells
    quality: float = 1.0   # the predicted OKS of each pose (clickpose.model.pose_quality)

    def of(self, name: str) -> float:
        return asdict(self)[name]

    @classmethod
    def with_changes(cls, changes: dict[str, float]) -> LossWeights:
        """The defaults with `changes` (term -> weight); an unknown term or a negative
        weight is refused, naming the terms there are."""
        known = set(cls.__dataclass_fields__)
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"loss weight '{name}' is not a loss term; the terms are "
                                 f"{', '.join(sorted(known))}")
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"loss weight '{name}' = {value!r}: give a number >= 0")
        return cls(**{name: float(value) for name, value in changes.items()})


def varifocal_loss(logits: Tensor, quality: Tensor, alpha: float = VARIFOCAL_ALPHA,
                   gamma: float = 2.0) -> Tensor:
    """VarifocalNet's loss, elementwise: positives (quality q > 0) learn q with a BCE
    weighted by q; negatives are down-weighted by alpha * p^gamma as in the focal loss."""
    p = logits.sigmoid().detach()
    weight = torch.where(quality > 0, quality, alpha * p ** gamma)
    return F.binary_cross_entropy_with_logits(logits, quality, reduction="none") * weight


def normalize_targets(targets: list[dict]) -> list[dict]:
    """Pixel targets (collate_batch) -> the normalized form the losses use.

    boxes (N, 4) cxcywh / (w, h); keypoints (N, K, 2) / (w, h); keypoint_weights (N, K) 1 where
    labelled; area (N,) pixel^2 (box area where missing); scale (2,) = (w, h) pixels.
    """
    out = []
    for t in targets:
        h, w = (float(v) for v in t["size"])
        device = t["boxes"].device
        whwh = torch.tensor([w, h, w, h], device=device)
        boxes_px = t["boxes"].float().reshape(-1, 4)
        kpts = t["keypoints"].float()
        if kpts.dim() == 2:  # flat COCO triplets (N, 3K)
            kpts = kpts.reshape(len(boxes_px), -1, 3)
        box_area = (boxes_px[:, 2] - boxes_px[:, 0]) * (boxes_px[:, 3] - boxes_px[:, 1])
        area = t.get("area")
        area = box_area if area is None else torch.where(area.float() > 0, area.float(), box_area)
        crowd = t.get("crowd_boxes")
        crowd = torch.zeros(0, 4, device=device) if crowd is None else crowd.float().reshape(-1, 4)
        out.append({
            "crowd_boxes": crowd / whwh,  # (M, 4) xyxy normalized: regions to ignore
            "boxes": box_xyxy_to_cxcywh(boxes_px) / whwh,
            "keypoints": kpts[..., :2] / whwh[:2],
            "keypoint_weights": (kpts[..., 2] > 0).float(),
            "area": area.clamp(min=1.0),
            "scale": whwh[:2],
        })
    return out


def _gather_targets(tn: list[dict], indices: list[tuple[Tensor, Tensor]], key: str) -> Tensor:
    return torch.cat([t[key][j.to(t[key].device)] for t, (_, j) in zip(tn, indices)])


def _scales(tn: list[dict], indices: list[tuple[Tensor, Tensor]]) -> Tensor:
    return torch.cat([t["scale"].expand(len(j), 2) for t, (_, j) in zip(tn, indices)])


def _src_index(indices: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    batch = torch.cat([torch.full_like(i, b) for b, (i, _) in enumerate(indices)])
    return batch, torch.cat([i for i, _ in indices])


class SetCriterion(nn.Module):
    """score_target: what a matched keypoint-decoder person's score learns: 'match' (1, DETR's
    focal loss) or 'oks' (the OKS of its own pose, detached: a varifocal loss, so that the
    score ranks persons by pose quality, which is what OKS AP rewards)."""

    def __init__(self, schema: KeypointSchema, matcher: HungarianMatcher | None = None,
                 weights: LossWeights | None = None, focal_alpha: float = 0.25,
                 score_target: str = "match"):
        super().__init__()
        if score_target not in SCORE_TARGETS:
            raise ValueError(f"score_target '{score_target}' is unknown; use one of "
                             f"{', '.join(SCORE_TARGETS)}")
        self.schema = schema
        self.matcher = matcher or HungarianMatcher(schema.sigmas, focal_alpha=focal_alpha)
        self.weights = weights or LossWeights()
        self.focal_alpha = focal_alpha
        self.score_target = score_target
        self.register_buffer("sigmas", torch.tensor(schema.sigmas, dtype=torch.float32),
                             persistent=False)

    # ---- single terms (unweighted) ------------------------------------------------
    def person_losses(self, out: dict, tn: list[dict], indices, num_persons: float,
                      pose_oks: Tensor | None = None) -> dict:
        """pose_oks (M,): the matched persons' OKS (keypoint_losses), the score target when
        score_target is 'oks' (at least 0.01: a matched person stays a positive)."""
        logits = out["pred_logits"].float()  # (B, Q, 1)
        target = torch.zeros_like(logits)
        batch, src = _src_index(indices)
        if self.score_target == "oks" and pose_oks is not None:
            target[batch, src] = pose_oks.detach().float().clamp(min=0.01)[:, None]
            score = varifocal_loss(logits, target)
        else:
            target[batch, src] = 1.0
            score = sigmoid_focal_loss(logits, target, self.focal_alpha, 2.0, "none")
        ignore = self.crowd_ignore(out["pred_boxes"], tn) & (target[..., 0] == 0)
        losses = {"ce": score.masked_fill(ignore[..., None], 0.0).sum() / num_persons}
        boxes = out["pred_boxes"][batch, src].float()
        gt = _gather_targets(tn, indices, "boxes")
        losses["bbox"] = F.l1_loss(boxes, gt, reduction="sum") / num_persons
        giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(gt)))
        losses["giou"] = (1 - giou).sum() / num_persons
        return losses

    @staticmethod
    def crowd_ignore(pred_boxes: Tensor, tn: list[dict]) -> Tensor:
        """(B, Q) True where a query's box centre lies in a crowd region (iscrowd=1): such
        people are unlabelled, so calling them persons is not penalised (COCOeval ignores
        detections matched to crowd regions too)."""
        ignore = torch.zeros(pred_boxes.shape[:2], dtype=torch.bool, device=pred_boxes.device)
        for b, t in enumerate(tn):
            crowd = t.get("crowd_boxes")
            if crowd is None or len(crowd) == 0:
                continue
            c = pred_boxes[b, :, None, :2].detach().float()  # (Q, 1, 2)
            inside = (c >= crowd[None, :, :2]) & (c <= crowd[None, :, 2:])
            ignore[b] = inside.all(-1).any(-1)
        return ignore

    def keypoint_losses(self, pred: Tensor, vis_logits: Tensor | None, gt: Tensor,
                        weights: Tensor, area: Tensor, scale: Tensor, num: float
                        ) -> tuple[dict, Tensor]:
        """pred, gt (M, K, 2); weights (M, K); area (M,); scale (M, 2); vis_logits (M, K).
        Returns the terms and each pose's OKS (M,; 1 for a person without labelled keypoints)."""
        pred = pred.float()
        losses = {"keypoints": keypoint_l1(pred, gt, weights).sum() / num}
        has = weights.sum(-1) > 0
        oks = torch.ones(len(pred), dtype=pred.dtype, device=pred.device)
        oks[has] = oks_similarity(pred[has], gt[has], weights[has], area[has],
                                  self.sigmas.to(pred.device), scale[has])
        losses["oks"] = (1 - oks[has]).sum() / num
        if vis_logits is not None:
            losses["vis"] = F.binary_cross_entropy_with_logits(
                vis_logits.float(), weights, reduction="sum") / (num * weights.shape[-1])
        return losses, oks

    def matched_keypoint_losses(self, out: dict, tn: list[dict], indices, num: float
                                ) -> tuple[dict, Tensor]:
        batch, src = _src_index(indices)
        vis = out.get("pred_visibility")
        return self.keypoint_losses(
            out["pred_keypoints"][batch, src], None if vis is None else vis[batch, src],
            _gather_targets(tn, indices, "keypoints"),
            _gather_targets(tn, indices, "keypoint_weights"),
            _gather_targets(tn, indices, "area"), _scales(tn, indices), num)

    # ---- groups of outputs --------------------------------------------------------
    def output_losses(self, out: dict, tn: list[dict], num: float,
                      padded: PaddedTargets | None = None) -> tuple[dict, list]:
        """Match one output dict to the targets; its person (and keypoint) terms."""
        indices = self.matcher(out, tn, padded)
        keypoint_terms, pose_oks = {}, None
        if "pred_keypoints" in out:
            keypoint_terms, pose_oks = self.matched_keypoint_losses(out, tn, indices, num)
        return {**self.person_losses(out, tn, indices, num, pose_oks), **keypoint_terms}, indices

    def dn_losses(self, dn_out: dict, padded: PaddedTargets, dn_targets: DnTargets) -> dict:
        """Reconstruction terms of the denoising queries against the pose they copy."""
        index = dn_targets.target_index
        batch, query = torch.nonzero(index >= 0, as_tuple=True)
        gt_index = index[batch, query]
        num = max(len(batch), 1)
        gt_kpts = padded.keypoints[batch, gt_index]
        weights = padded.keypoint_weights[batch, gt_index]
        area, gt_boxes = padded.area[batch, gt_index], padded.boxes[batch, gt_index]
        scale = padded.scale[batch]

        def one(layer: dict) -> dict:
            vis = layer.get("pred_visibility")
            losses, _ = self.keypoint_losses(layer["pred_keypoints"][batch, query],
                                             None if vis is None else vis[batch, query],
                                             gt_kpts, weights, area, scale, num)
            if "pred_logits" in layer:  # every denoising query is a real person
                logits = layer["pred_logits"][batch, query].float()
                losses["ce"] = sigmoid_focal_loss(logits, torch.ones_like(logits),
                                                  self.focal_alpha, 2.0, "sum") / num
            if "pred_boxes" in layer:
                boxes = layer["pred_boxes"][batch, query].float()
                losses["bbox"] = F.l1_loss(boxes, gt_boxes, reduction="sum") / num
                giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(boxes),
                                                      box_cxcywh_to_xyxy(gt_boxes)))
                losses["giou"] = (1 - giou).sum() / num
            return losses

        losses = {f"dn_{k}": v for k, v in one(dn_out).items()}
        for i, aux in enumerate(dn_out.get("aux_outputs", [])):
            losses.update({f"dn_{k}_aux{i}": v for k, v in one(aux).items()})
        return losses

    # ---- everything ---------------------------------------------------------------
    def weighted(self, raw: dict[str, Tensor], factor: float = 1.0, prefix: str = ""
                 ) -> dict[str, Tensor]:
        out = {}
        for name, value in raw.items():
            term = name.removeprefix("dn_").split("_")[0]
            scale = self.weights.dn if name.startswith("dn_") else 1.0
            out[f"{prefix}loss_{name}"] = value * self.weights.of(term) * scale * factor
        return out

    def forward(self, outputs: dict, targets: list[dict], dn_targets: DnTargets | None = None,
                normalized: bool = False, prefix: str = "", factor: float = 1.0
                ) -> dict[str, Tensor]:
        """Weighted losses, one entry per term and layer ('loss_oks', 'loss_oks_aux0', ...).

        targets: collated pixel targets, or normalize_targets() output with normalized=True.
        The total loss is the sum of the values.
        """
        tn = targets if normalized else normalize_targets(targets)
        num = float(max(sum(len(t["boxes"]) for t in tn), 1))
        padded = PaddedTargets.of(tn, outputs["pred_boxes"].device)
        raw, _ = self.output_losses(outputs, tn, num, padded)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            raw.update({f"{k}_aux{i}": v
                        for k, v in self.output_losses(aux, tn, num, padded)[0].items()})
        for i, aux in enumerate(outputs.get("human_aux_outputs", [])):
            raw.update({f"{k}_human{i}": v
                        for k, v in self.output_losses(aux, tn, num, padded)[0].items()})
        if "keypoint_heatmap" in outputs:
            raw["heatmap"] = heatmap_focal_loss(outputs["keypoint_heatmap"],
                                                outputs["heatmap_mask"], tn, self.sigmas)
        if "keypoint_offsets" in outputs:
            raw["offsets"] = offset_l1_loss(outputs["keypoint_offsets"], outputs["heatmap_mask"], tn)
        if "pred_quality" in outputs:
            raw["quality"] = quality_loss(outputs["pred_quality"], outputs["pred_keypoints"],
                                          padded, self.sigmas, outputs["pred_logits"])
        losses = self.weighted(raw, factor, prefix)
        if "enc_outputs" in outputs:
            enc, _ = self.output_losses(outputs["enc_outputs"], tn, num, padded)
            losses.update(self.weighted({f"{k}_enc": v for k, v in enc.items()},
                                        factor * self.weights.enc, prefix))
        if dn_targets is not None and outputs.get("dn") is not None:
            losses.update(self.weighted(self.dn_losses(outputs["dn"], padded, dn_targets),
                                        factor, prefix))
        return losses

    def match(self, outputs: dict, targets: list[dict], normalized: bool = False):
        tn = targets if normalized else normalize_targets(targets)
        return self.matcher(outputs, tn)
