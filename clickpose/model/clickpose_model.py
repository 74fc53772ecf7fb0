"""Click-Pose: backbone -> deformable encoder -> human detection -> human-to-keypoint decoder.

Coordinates inside the model are normalized to [0, 1] by each image's own unpadded
(h, w); boxes are (cx, cy, w, h). The three stages are separate methods so that the
interactive session can run the first two once per image and only the keypoint decoder
per click.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from clickpose.keypoints import KeypointSchema, SchemaError
from clickpose.model.backbone import Backbone, downsample_mask
from clickpose.model.box_ops import box_xyxy_to_cxcywh
from clickpose.model.embedding import pooled_memory
from clickpose.model.encoder import Encoder, EncoderState, valid_ratios_of
from clickpose.model.human_decoder import HumanDecoder, HumanState
from clickpose.model.inference import EvalTransform, outputs_to_poses
from clickpose.model.keypoint_decoder import KeypointDecoder, denoising_across_mask
from clickpose.model.keypoint_heatmap import KeypointHeatmapHead, heatmap_snap, heatmap_start
from clickpose.model.person_score import heatmap_support, person_scores
from clickpose.model.pose_quality import PoseQualityHead
from clickpose.model.position_encoding import PositionEmbeddingSine
from clickpose.model.presets import ModelConfig
from clickpose.poses import Poses


class ClickPose(nn.Module):
    def __init__(self, config: ModelConfig, schema: KeypointSchema):
        super().__init__()
        self.config, self.schema = config, schema
        # What a click says about the rest of its person (clickpose.model.click_prior):
        # fitted after training and kept in the checkpoint's config.json, not a weight.
        self.click_prior = None
        dim, levels = config.hidden_dim, config.num_feature_levels
        # A heatmap level, when there is one, comes first from the backbone; the encoder
        # reads the others.
        self.fine_levels = 0 if config.heatmap_fine_level is None else 1
        out_indices = [config.heatmap_fine_level] * self.fine_levels + config.backbone_out_indices
        self.backbone = Backbone(config.backbone, out_indices,
                                 config.backbone_weights, config.frozen_batch_norm,
                                 config.frozen_backbone_blocks)
        channels = self.backbone.channels
        self.input_proj = self._input_projections(channels[self.fine_levels:], dim, levels)
        self.level_embed = nn.Parameter(torch.empty(levels, dim).normal_())
        self.position_encoding = PositionEmbeddingSine(dim // 2)
        self.encoder = Encoder(config.enc_layers, dim, config.ffn_dim, levels, config.num_heads,
                               config.enc_points, config.dropout)
        self.human_decoder = HumanDecoder(
            config.human_layers, dim, config.ffn_dim, levels, config.num_heads,
            config.dec_points, config.dropout, config.num_queries, config.max_humans)
        self.keypoint_decoder = KeypointDecoder(
            config.keypoint_layers, schema.num_keypoints, dim, config.ffn_dim, levels,
            config.num_heads, config.dec_points, config.dropout)
        self.keypoint_heatmap = (
            KeypointHeatmapHead(dim, schema.num_keypoints,
                                channels[0] if self.fine_levels else None,
                                offsets=config.heatmap_offsets,
                                dilations=tuple(config.heatmap_head_dilations))
            if config.keypoint_heatmap else None)
        self.pose_quality = None
        if config.pose_quality:
            # Its own draw of the random stream: the data order and everything else a run
            # draws stay as they are without it (the head reads detached features).
            with torch.random.fork_rng(devices=[]):
                self.pose_quality = PoseQualityHead(schema.num_keypoints)

    @staticmethod
    def _input_projections(channels: list[int], dim: int, levels: int) -> nn.ModuleList:
        """1x1 conv per backbone level, then stride-2 3x3 convs for the extra levels."""
        projections = [nn.Sequential(nn.Conv2d(c, dim, 1), nn.GroupNorm(32, dim)) for c in channels]
        in_channels = channels[-1]
        for _ in range(levels - len(channels)):
            projections.append(nn.Sequential(nn.Conv2d(in_channels, dim, 3, stride=2, padding=1),
                                             nn.GroupNorm(32, dim)))
            in_channels = dim
        for proj in projections:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        return nn.ModuleList(projections)

    # ---- stage 1: image -> encoder memory ------------------------------------------------
    def encode(self, images: Tensor, mask: Tensor,
               features: list[tuple[Tensor, Tensor]] | None = None) -> EncoderState:
        """(B, 3, H, W) normalized images, (B, H, W) True on padding -> EncoderState.
        `features`: the backbone's output for them, when already known (a feature cache)."""
        if features is None:
            features = self.backbone(images, mask)
        fine, features = features[:self.fine_levels], features[self.fine_levels:]
        maps, masks = [], []
        for proj, (feature, level_mask) in zip(self.input_proj, features):
            maps.append(proj(feature))
            masks.append(level_mask)
        last = features[-1][0]
        for proj in self.input_proj[len(features):]:
            last = proj(last)
            maps.append(last)
            masks.append(downsample_mask(mask, last.shape[-2:]))

        level_shapes = [tuple(m.shape[-2:]) for m in maps]
        pos = [self.position_encoding(m) + self.level_embed[i][None, :, None, None]
               for i, m in enumerate(masks)]
        src = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], 1)        # (B, S, D)
        pos = torch.cat([p.flatten(2).transpose(1, 2) for p in pos], 1)
        memory_mask = torch.cat([m.flatten(1) for m in masks], 1)               # (B, S)
        valid_ratios = torch.stack([valid_ratios_of(m) for m in masks], 1)      # (B, L, 2)
        starts = [0]
        for h, w in level_shapes[:-1]:
            starts.append(starts[-1] + h * w)
        memory = self.encoder(src, pos, memory_mask, level_shapes, valid_ratios)
        state = EncoderState(memory, memory_mask, pos, level_shapes, starts, valid_ratios)
        if self.keypoint_heatmap is not None:
            h, w = level_shapes[0]
            finest = memory[:, :h * w].transpose(1, 2).reshape(len(memory), -1, h, w)
            state.keypoint_heatmap, state.keypoint_offsets = self.keypoint_heatmap(
                finest, fine[0][0] if fine else None)
            state.heatmap_padding = fine[0][1] if fine else None
        return state

    # ---- stage 2: humans -----------------------------------------------------------------
    def detect_humans(self, state: EncoderState) -> HumanState:
        return self.human_decoder(state)

    def humans_from_boxes(self, boxes: Tensor, logits: Tensor | None = None) -> HumanState:
        """Humans given by (B, N, 4) cxcywh normalized boxes (drawn by a person, or another
        detector's output): their content is the learned 'given person' query."""
        batch, persons = boxes.shape[:2]
        if logits is None:
            logits = torch.zeros(batch, persons, 1, device=boxes.device)
        return HumanState(self.keypoint_decoder.given_person_content(batch, persons), boxes, logits)

    def default_keypoints(self, boxes: Tensor, state: EncoderState | None = None) -> Tensor:
        """(B, N, 4) boxes -> (B, N, K, 2): where the keypoint decoder starts without a hint:
        each type's learned place in the box, moved to the heatmap's evidence nearby when
        the model has heatmaps and `state` is given."""
        layout = self.keypoint_decoder.default_keypoints(boxes)
        if state is None or state.keypoint_heatmap is None:
            return layout
        start = heatmap_start(state.keypoint_heatmap, state.heatmap_mask, boxes, layout,
                              self.config.heatmap_prior_sigma, offsets=state.keypoint_offsets)
        if self.config.heatmap_recentre is None:
            return start
        return heatmap_start(state.keypoint_heatmap, state.heatmap_mask, boxes, start,
                             self.config.heatmap_recentre, offsets=state.keypoint_offsets)

    # ---- stage 3: keypoints --------------------------------------------------------------
    def decode_keypoints(self, state: EncoderState, humans: HumanState,
                         init_keypoints: Tensor | None = None, pinned: Tensor | None = None,
                         dn: dict | None = None) -> dict:
        """Keypoints, visibility and refined boxes of the `humans`.

        init_keypoints (B, N, K, 2): start from these poses instead of the model's own
        default (clicks, a previous prediction, another detector's poses).
        pinned (B, N, K) bool: keypoints given exactly; they come out unchanged in every layer.
        dn: denoising persons {boxes (B, D, 4), keypoints (B, D, K, 2), pinned (B, D, K),
        valid (B, D)} decoded alongside, unseen by the normal persons; see outputs["dn"].
        """
        content, boxes = humans.content, humans.boxes
        batch, num_humans = content.shape[:2]
        keypoints = (self.default_keypoints(boxes, state) if init_keypoints is None
                     else init_keypoints)
        if pinned is None:
            pinned = torch.zeros(keypoints.shape[:-1], dtype=torch.bool, device=boxes.device)
        across_mask = None
        if dn is not None:
            num_dn = dn["boxes"].shape[1]
            given = self.keypoint_decoder.given_person_content(batch, num_dn)
            content = torch.cat([content, given], 1)
            boxes = torch.cat([boxes, dn["boxes"]], 1)
            keypoints = torch.cat([keypoints, dn["keypoints"]], 1)
            pinned = torch.cat([pinned, dn["pinned"]], 1)
            across_mask = denoising_across_mask(num_humans, dn["valid"])
        layers = self.keypoint_decoder(state, content, boxes, keypoints, pinned.to(torch.bool),
                                       across_mask)

        normal = [{k: v[:, :num_humans] for k, v in out.items()} for out in layers]
        outputs = {**normal[-1], "aux_outputs": normal[:-1],
                   "human_aux_outputs": humans.layer_outputs}
        if not self.training:  # inference only: no loss reads them
            # Scores read the heatmaps at the decoder's own keypoints: once snapped onto
            # the peaks, every pose would look supported.
            clicked = pinned[:, :num_humans].any(-1)
            outputs["pred_scores"] = self.rank_scores(state, outputs, clicked)
            outputs["pred_keypoints"] = self.snap_keypoints(state, outputs, pinned[:, :num_humans])
        if humans.enc_outputs is not None:
            outputs["enc_outputs"] = humans.enc_outputs
        if state.keypoint_heatmap is not None:
            outputs["keypoint_heatmap"] = state.keypoint_heatmap
            outputs["heatmap_mask"] = state.heatmap_mask
            if state.keypoint_offsets is not None:
                outputs["keypoint_offsets"] = state.keypoint_offsets
        if dn is not None:
            noised = [{k: v[:, num_humans:] for k, v in out.items()} for out in layers]
            outputs["dn"] = {**noised[-1], "aux_outputs": noised[:-1]}
        return outputs

    def predict_keypoints(self, state: EncoderState, humans: HumanState) -> dict:
        """The humans' predicted poses: `config.keypoint_passes` decodes, each starting from
        the last one's keypoints (the first from the model's own start).
        outputs["start_keypoints"]: where a decode must start to give these poses again, the
        last pass's start (the poses themselves after a single pass): a session's clicks
        decode from there, as training's feedback rounds decode from the model's pose."""
        outputs = self.decode_keypoints(state, humans)
        start = outputs
        for _ in range(self.config.keypoint_passes - 1):
            start = outputs
            outputs = self.decode_keypoints(state, humans, init_keypoints=start["pred_keypoints"])
        outputs["start_keypoints"] = start["pred_keypoints"]
        outputs["start_boxes"] = start["pred_boxes"]
        return outputs

    def forward(self, images: Tensor, mask: Tensor, dn: dict | None = None) -> dict:
        return self.outputs_and_state(images, mask, dn)[0]

    def outputs_and_state(self, images: Tensor, mask: Tensor, dn: dict | None = None
                          ) -> tuple[dict, EncoderState]:
        """The forward pass's outputs, and the encoder state they were decoded from."""
        state = self.encode(images, mask)
        humans = self.detect_humans(state)
        predicting = not self.training and dn is None
        outputs = (self.predict_keypoints(state, humans) if predicting
                   else self.decode_keypoints(state, humans, dn=dn))
        if self.config.flip_test and predicting:
            outputs["pred_keypoints"] = self.flip_averaged_keypoints(images, mask, humans,
                                                                     outputs)
        return outputs, state

    @torch.no_grad()
    def flip_averaged_keypoints(self, images: Tensor, mask: Tensor, humans: HumanState,
                                outputs: dict) -> Tensor:
        """The mean of each person's keypoints and those the decoder gives the same person
        on the mirrored image (its box mirrored, started from its mirrored pose), mirrored
        back with left and right exchanged. Each image mirrors within its own unpadded
        width, so normalized x maps to 1 - x."""
        permutation = torch.tensor(self.schema.flip_permutation, device=images.device)

        def mirror(keypoints: Tensor) -> Tensor:
            keypoints = keypoints[:, :, permutation].clone()
            keypoints[..., 0] = 1.0 - keypoints[..., 0]
            return keypoints

        state = self.encode(mirror_within_valid(images, mask), mask)
        boxes = humans.boxes.clone()
        boxes[..., 0] = 1.0 - boxes[..., 0]
        mirrored = self.decode_keypoints(state, HumanState(humans.content, boxes, humans.logits),
                                         init_keypoints=mirror(outputs["pred_keypoints"]))
        return (outputs["pred_keypoints"] + mirror(mirrored["pred_keypoints"])) / 2

    def snap_keypoints(self, state: EncoderState, last: dict, pinned: Tensor) -> Tensor:
        """The last layer's keypoints, drawn to the heatmap evidence close by (config
        heatmap_snap). A person with a clicked keypoint keeps the decoder's pose: the
        heatmaps do not see clicks, and snapping would pull the pose back to the evidence
        the click just corrected. Models without heatmaps keep every keypoint as it is."""
        snap = self.config.heatmap_snap
        if snap is None or state.keypoint_heatmap is None:
            return last["pred_keypoints"]
        clicked_person = pinned.to(torch.bool).any(-1, keepdim=True).expand_as(pinned)
        return heatmap_snap(state.keypoint_heatmap, state.heatmap_mask, last["pred_boxes"],
                            last["pred_keypoints"], clicked_person, snap,
                            state.keypoint_offsets)

    def keypoint_support(self, state: EncoderState, last: dict) -> Tensor | None:
        """(B, N, K) heatmap probability at each keypoint of `last` (None without heatmaps)."""
        if state.keypoint_heatmap is None:
            return None
        return heatmap_support(state.keypoint_heatmap, state.heatmap_mask, last["pred_keypoints"])

    def quality_logits(self, state: EncoderState, last: dict, support: Tensor | None = None,
                       first: Tensor | None = None) -> Tensor:
        """(B, N) logits of each pose's predicted OKS (clickpose.model.pose_quality);
        `first` (B, N) bool: persons ranked above every other (clicked ones)."""
        if support is None:
            support = self.keypoint_support(state, last)
        if support is None:
            support = torch.ones_like(last["pred_visibility"])
        return self.pose_quality(last["pred_logits"], last["pred_boxes"], last["pred_keypoints"],
                                 last["pred_visibility"], support, first)

    @torch.no_grad()
    def rank_scores(self, state: EncoderState, last: dict, clicked: Tensor | None = None
                    ) -> Tensor:
        """(B, N) scores that rank the persons of a decoder layer's output `last`: when the
        model learns its poses' quality (config.pose_quality), the predicted OKS, which
        also learns to keep a person's duplicates low (a session keeps every candidate);
        clicked persons (B, N) rank above their duplicates. Else the person probability
        weighed with the heatmaps' support (clickpose.model.person_score)."""
        support = self.keypoint_support(state, last)
        if self.pose_quality is not None:
            return self.quality_logits(state, last, support, clicked).float().sigmoid()
        return person_scores(last["pred_logits"], support)

    # ---- inference -----------------------------------------------------------------------
    def postprocess(self, outputs: dict, sizes) -> list[Poses]:
        """Model outputs -> Poses per image in pixels of the original (h, w) `sizes`,
        best first, duplicates (box IoU over config.duplicate_iou) dropped."""
        return outputs_to_poses(outputs, sizes, self.config.duplicate_iou)

    def predict(self, image) -> Poses:
        """One image (PIL, HxWx3 uint8 array or path) -> Poses sorted by score."""
        return self._predict(image, embed=False)[0]

    def predict_with_embedding(self, image) -> tuple[Poses, np.ndarray]:
        """predict's Poses, and the image's embedding from the same pass
        (clickpose.model.embedding: what selection's diversity strategies compare)."""
        return self._predict(image, embed=True)

    @torch.no_grad()
    def _predict(self, image, embed: bool) -> tuple[Poses, np.ndarray | None]:
        images, mask, size = EvalTransform.from_config(self.config)(image, self._device())
        was_training = self.training
        if was_training:
            self.eval()
        try:
            outputs, state = self.outputs_and_state(images, mask)
            return (self.postprocess(outputs, [size])[0],
                    pooled_memory(state) if embed else None)
        finally:
            if was_training:
                self.train()

    def session(self, image, initial_poses: Poses | None = None, **kwargs):
        """An InteractiveSession on one image (see clickpose.model.session)."""
        from clickpose.model.session import InteractiveSession

        return InteractiveSession(self, image, initial_poses=initial_poses, **kwargs)

    def _device(self) -> torch.device:
        return next(self.parameters()).device


def build_model(config: ModelConfig, schema: KeypointSchema) -> ClickPose:
    """A ClickPose for `schema`; config.num_keypoints is filled from it (or must match it)."""
    if config.num_keypoints is None:
        config = config.model_copy(update={"num_keypoints": schema.num_keypoints})
    elif config.num_keypoints != schema.num_keypoints:
        raise SchemaError(
            f"model config '{config.preset}': num_keypoints is {config.num_keypoints} but schema "
            f"'{schema.name}' has {schema.num_keypoints} keypoints; build the model from the "
            "schema it will be trained on (leave num_keypoints unset to take the schema's)")
    return ClickPose(config, schema)


def mirror_within_valid(images: Tensor, mask: Tensor) -> Tensor:
    """(B, 3, H, W) images mirrored left-right within each one's unpadded width (mask
    (B, H, W) True on padding, which stays where it is)."""
    mirrored = images.clone()
    widths = (~mask[:, 0]).sum(-1).tolist()
    for b, width in enumerate(widths):
        mirrored[b, ..., :width] = images[b, ..., :width].flip(-1)
    return mirrored


def boxes_xyxy_to_normalized(boxes_xyxy, size: tuple[int, int]) -> Tensor:
    """(N, 4) pixel xyxy boxes of an image of (h, w) -> (N, 4) normalized cxcywh."""
    h, w = size
    boxes = torch.as_tensor(boxes_xyxy, dtype=torch.float32).reshape(-1, 4)
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    return box_xyxy_to_cxcywh(boxes / scale).clamp(0.0, 1.0)
