"""What the interactive-session tests share: an image with structure and a forward-call counter."""
from __future__ import annotations

import numpy as np
import pytest
import torch


def structured_image(seed: int = 0, height: int = 240, width: int = 320) -> np.ndarray:
    """Bright figures on a dark noisy background, so the image has structure."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    for x0 in (40, 150, 250):
        image[40:200, x0:x0 + 30] = (200, 180, 160)
        image[60:70, x0 - 20:x0 + 50] = (210, 190, 170)
    return image


@pytest.fixture
def count_calls():
    """count_calls(module) -> a one-item list that counts the module's forward calls."""
    handles = []

    def counter(module: torch.nn.Module) -> list[int]:
        calls = [0]

        def hook(*_):
            calls[0] += 1

        handles.append(module.register_forward_hook(hook))
        return calls

    yield counter
    for handle in handles:
        handle.remove()
