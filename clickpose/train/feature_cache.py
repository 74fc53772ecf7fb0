"""Backbone features kept between epochs, for training with a frozen backbone.

When no backbone weight trains (the `tiny` preset), its forward pass gives the same maps
for the same input every epoch, yet on a CPU it is a third of a training step. With the
cache, the training images go through a deterministic resize and a random horizontal
flip only (no multi-scale, crop or colour jitter: those would make every input new), and
the maps of each (image, flipped) pair are computed once and stored in half precision,
up to a memory limit; beyond it, maps are computed as usual.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from clickpose.model.backbone import downsample_mask
from clickpose.model.encoder import valid_cells


def backbone_is_frozen(model: nn.Module) -> bool:
    """True when no backbone parameter trains and its normalisation cannot change."""
    backbone = model.backbone
    if any(p.requires_grad for p in backbone.parameters()):
        return False
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.modules())


def item_key(target: dict) -> tuple[int, bool]:
    return int(target["image_id"]), bool(target.get("flipped", False))


class BackboneFeatureCache:
    """(image id, flipped) -> each level's map over the image's own (unpadded) extent."""

    def __init__(self, limit_mb: float = 2048.0, dtype: torch.dtype = torch.float16):
        self.limit_bytes = int(limit_mb * 2**20)
        self.dtype = dtype
        self._store: dict[tuple[int, bool], list[Tensor]] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def features(self, backbone: nn.Module, images: Tensor, mask: Tensor,
                 targets: list[dict]) -> list[tuple[Tensor, Tensor]]:
        """What backbone(images, mask) returns, from the cache where it holds the items."""
        keys = [item_key(t) for t in targets]
        per_item = [self._store.get(key) for key in keys]
        missing = [i for i, maps in enumerate(per_item) if maps is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            rows = torch.tensor(missing, device=images.device)
            with torch.no_grad():
                computed = backbone(images[rows], mask[rows])
            for row, i in enumerate(missing):
                per_item[i] = self._own_extent(computed, row, mask[i])
                self._keep(keys[i], per_item[i])
        return self._assemble(per_item, mask)

    def _own_extent(self, computed: list[tuple[Tensor, Tensor]], row: int, mask: Tensor
                    ) -> list[Tensor]:
        """One item's maps over the cells its unpadded image covers, in the cache's dtype."""
        valid_w, valid_h = (int(v) for v in valid_cells(mask[None]))
        maps = []
        for feature, _ in computed:
            fh, fw = feature.shape[-2:]
            h = -(-valid_h * fh // mask.shape[0])  # ceil
            w = -(-valid_w * fw // mask.shape[1])
            maps.append(feature[row, :, :h, :w].to(self.dtype).clone())
        return maps

    def _keep(self, key: tuple[int, bool], maps: list[Tensor]) -> None:
        size = sum(m.numel() * m.element_size() for m in maps)
        if self.bytes + size <= self.limit_bytes:
            self._store[key] = maps
            self.bytes += size

    @staticmethod
    def _assemble(per_item: list[list[Tensor]], mask: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Pad the items' maps to the batch's (zeros, as the padded images' cells are
        ignored by the mask) and give each level its mask."""
        out = []
        for level in range(len(per_item[0])):
            maps = [item[level] for item in per_item]
            h = max(m.shape[-2] for m in maps)
            w = max(m.shape[-1] for m in maps)
            batch = torch.zeros(len(maps), maps[0].shape[0], h, w, device=mask.device)
            for i, m in enumerate(maps):
                batch[i, :, :m.shape[-2], :m.shape[-1]] = m
            out.append((batch, downsample_mask(mask, (h, w))))
        return out
