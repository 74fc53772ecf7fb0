"""Batching images of different sizes: pad to the largest, and say where the padding is."""
from __future__ import annotations

import numpy as np
import torch


def collate_batch(batch: list[tuple[torch.Tensor, dict]]):
    """[(image (3, H_i, W_i), target)] -> (images (B, 3, Hmax, Wmax), mask (B, Hmax, Wmax),
    targets).

    Images sit at the top-left corner, zero-padded (zero is the mean colour after
    normalisation); mask is True on padding, the pixels attention must not look at. Targets
    stay in pixels of their own image (`size`), which the padding does not move.
    """
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    channels = images[0].shape[0]
    height = max(image.shape[1] for image in images)
    width = max(image.shape[2] for image in images)
    # numpy copies: in a main-process DataLoader, torch would spread these large copies over
    # its thread pool, several times slower on a busy CPU.
    padded = np.zeros((len(images), channels, height, width), dtype=np.float32)
    mask = np.ones((len(images), height, width), dtype=bool)
    for i, image in enumerate(images):
        h, w = image.shape[1:]
        padded[i, :, :h, :w] = image.numpy()
        mask[i, :h, :w] = False
    return torch.from_numpy(padded).to(images[0].dtype), torch.from_numpy(mask), targets
