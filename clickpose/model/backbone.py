"""Multi-scale CNN backbone: timm `features_only` maps at the strides the config asks for."""
from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from timm.layers import freeze_batch_norm_2d
from torch import Tensor, nn

from clickpose.model.lite0_weights import load_lite0_weights


class Backbone(nn.Module):
    """(B, 3, H, W) images and (B, H, W) padding mask -> per level (features, mask)."""

    def __init__(self, name: str, out_indices: list[int], weights: str = "none",
                 frozen_batch_norm: bool = False, frozen_blocks: int = 0):
        super().__init__()
        try:
            self.body = timm.create_model(name, features_only=True,
                                          out_indices=tuple(out_indices),
                                          pretrained=(weights == "timm"))
        except (OSError, RuntimeError) as e:
            if weights != "timm":
                raise
            raise RuntimeError(
                f"backbone '{name}': could not fetch timm's ImageNet weights ({e}); this needs "
                "a network (or the weights in the Hugging Face cache). Use backbone_weights "
                "'none' to train from scratch") from e
        if weights == "lite0":
            if name != "efficientnet_lite0":
                raise ValueError(f"backbone_weights 'lite0' fits backbone 'efficientnet_lite0', "
                                 f"not '{name}'")
            load_lite0_weights(self.body)
        if frozen_batch_norm:
            # Pretrained statistics stay fixed: batches of a few images would spoil them.
            self.body = freeze_batch_norm_2d(self.body)
        _drop_unused_blocks(self.body)
        freeze_stem_and_blocks(self.body, frozen_blocks)
        self.channels: list[int] = self.body.feature_info.channels()
        self.strides: list[int] = self.body.feature_info.reduction()

    def forward(self, images: Tensor, mask: Tensor) -> list[tuple[Tensor, Tensor]]:
        features = self.body(images)
        out = []
        for feature in features:
            out.append((feature, downsample_mask(mask, feature.shape[-2:])))
        return out


def downsample_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, H, W) padding mask -> (B, h, w), nearest neighbour."""
    return F.interpolate(mask[None].float(), size=size)[0].to(torch.bool)


def freeze_stem_and_blocks(body: nn.Module, num_blocks: int) -> None:
    """No gradient for the stem and the first `num_blocks` blocks: pretrained low-level
    filters need no tuning, and the backward pass skips the costly high-resolution maps."""
    if num_blocks <= 0:
        return
    if getattr(body, "blocks", None) is None:
        raise ValueError(f"frozen_backbone_blocks {num_blocks}: the backbone "
                         f"{type(body).__name__} has no 'blocks' sequence (an EfficientNet-"
                         "style net has); set frozen_backbone_blocks to 0 for it")
    for name, p in body.named_parameters():
        first = name.split(".")[0]
        if first != "blocks" or int(name.split(".")[1]) < num_blocks:
            p.requires_grad_(False)


def _drop_unused_blocks(body: nn.Module) -> None:
    """timm's efficientnet-style feature nets keep every block even when the last requested
    level comes earlier; drop the tail so it costs neither time nor unused parameters."""
    blocks = getattr(body, "blocks", None)
    last = body.feature_info.module_name()[-1]
    if isinstance(blocks, nn.Sequential) and last.startswith("blocks."):
        body.blocks = blocks[:int(last.split(".")[1]) + 1]
