"""An image's embedding for the diversity strategies of `selection` (k-center, clusters):
the encoder memory averaged over the image's own tokens (padding left out), unit length.

It costs nothing beyond a prediction, since the memory is what the decoders read, and it
sees what the model sees: the backbone's features after projection and the encoder's
context across scales."""
from __future__ import annotations

import numpy as np

from clickpose.model.encoder import EncoderState


def pooled_memory(state: EncoderState) -> np.ndarray:
    """(D,) float64, unit length, of the first image of `state`."""
    keep = ~state.memory_mask[0]
    vector = state.memory[0][keep].float().mean(0).double().cpu().numpy()
    return vector / max(float(np.linalg.norm(vector)), 1e-12)
