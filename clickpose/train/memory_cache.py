"""A frozen encoder and its output kept between epochs: the later part of a CPU run.

On a CPU the `tiny` step spends about a third of its time in the encoder's forward and
backward passes. Once the encoder (its input projections, level embeddings and layers)
stops training, its output for an (image, flip) pair no longer changes: it is computed once,
stored in half precision up to a memory limit, and every later step trains only the heatmap
head and the decoders on it (clickpose.train.loop: `freeze_encoder_after`). Like the
backbone feature cache it needs deterministic inputs (flip-only augmentation). An item's
memory is the one its first batch gave: where images differ in size, the padding of that
batch (which the input projections' group norms see) is the one it keeps.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from clickpose.model.encoder import valid_cells
from clickpose.train.feature_cache import item_key


def encoder_parts(model: nn.Module) -> list[nn.Parameter]:
    """The weights the encoder's output depends on, the backbone's aside."""
    return [*model.input_proj.parameters(), model.level_embed, *model.encoder.parameters()]


def freeze_encoder(model: nn.Module) -> None:
    """No more gradients for the encoder's weights: AdamW skips them from the next step."""
    for parameter in encoder_parts(model):
        parameter.requires_grad_(False)
        parameter.grad = None


def encoder_is_frozen(model: nn.Module) -> bool:
    return not any(p.requires_grad for p in encoder_parts(model))


class EncoderMemoryCache:
    """(image id, flipped) -> the frozen encoder's tokens of each level over the image's own
    (unpadded) cells, (h, w, D) each."""

    def __init__(self, limit_mb: float = 2048.0, dtype: torch.dtype = torch.float16):
        self.limit_bytes = int(limit_mb * 2**20)
        self.dtype = dtype
        self._store: dict[tuple[int, bool], list[Tensor]] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def memory(self, model: nn.Module, images: Tensor, mask: Tensor,
               features: list[tuple[Tensor, Tensor]], targets: list[dict]) -> Tensor:
        """The (B, S, D) memory that model.encode(images, mask, features) computes, from the
        cache where it holds the items. The encoder must be frozen."""
        if not encoder_is_frozen(model):
            raise RuntimeError("EncoderMemoryCache: the encoder still trains, so its output "
                               "changes every step; call freeze_encoder(model) first")
        encoder_features = features[model.fine_levels:]
        shapes, masks = model.token_layout(mask, encoder_features)
        keys = [item_key(t) for t in targets]
        per_item = [self._store.get(key) for key in keys]
        missing = [i for i, levels in enumerate(per_item) if levels is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            rows = torch.tensor(missing, device=images.device)
            with torch.no_grad():
                computed = model.encode(images[rows], mask[rows],
                                        [(f[rows], m[rows]) for f, m in features]).memory
            for row, i in enumerate(missing):
                per_item[i] = self._own_extent(computed[row], shapes, [m[i] for m in masks])
                self._keep(keys[i], per_item[i])
        return self._assemble(per_item, shapes, images.device)

    def _own_extent(self, memory: Tensor, shapes: list[tuple[int, int]],
                    masks: list[Tensor]) -> list[Tensor]:
        """One item's (S, D) memory -> its (h, w, D) tokens per level over its own cells."""
        levels, start = [], 0
        for (h, w), level_mask in zip(shapes, masks):
            tokens = memory[start:start + h * w].reshape(h, w, -1)
            valid_w, valid_h = (int(v) for v in valid_cells(level_mask[None]))
            levels.append(tokens[:valid_h, :valid_w].to(self.dtype).clone())
            start += h * w
        return levels

    def _keep(self, key: tuple[int, bool], levels: list[Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in levels)
        if self.bytes + size <= self.limit_bytes:
            self._store[key] = levels
            self.bytes += size

    @staticmethod
    def _assemble(per_item: list[list[Tensor]], shapes: list[tuple[int, int]],
                  device: torch.device) -> Tensor:
        """The batch's (B, S, D) memory: each item's tokens in its own cells, zeros on the
        padding (which the decoders' masks ignore)."""
        dim = per_item[0][0].shape[-1]
        levels = []
        for level, (h, w) in enumerate(shapes):
            batch = torch.zeros(len(per_item), h, w, dim, device=device)
            for i, item in enumerate(per_item):
                tokens = item[level]
                batch[i, :tokens.shape[0], :tokens.shape[1]] = tokens
            levels.append(batch.flatten(1, 2))
        return torch.cat(levels, 1)
