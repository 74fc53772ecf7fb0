"""Which images a training epoch draws: all alike, or the newest labels as a fixed share.

A round of active learning fine-tunes the last model on every label so far, for a budget of
steps. Drawn uniformly, the round's new images (the ones the strategy chose, and the only
ones the last model has not learnt from) are a shrinking part of each batch as labels
accumulate; `recent_share` keeps them at a fixed part, the rest replaying the older labels.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.utils.data import WeightedRandomSampler


def recent_sampler(file_names: list[str], recent: Iterable[str], share: float,
                   generator: torch.Generator) -> WeightedRandomSampler | None:
    """A sampler that draws `recent` images (file names as in annotations.json) as `share`
    of an epoch's samples, with replacement; None when all images are recent or none is
    (uniform shuffling is then the same thing)."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"recent_share={share}: give a share of each epoch between 0 and 1 "
                         "(exclusive), or leave it unset to draw every image alike")
    wanted = set(recent)
    unknown = wanted - set(file_names)
    if unknown:
        raise ValueError(f"recent_images: {len(unknown)} file names are not in the training "
                         f"data (e.g. {min(unknown)!r}); give them as annotations.json "
                         "names them")
    is_recent = torch.tensor([name in wanted for name in file_names])
    num_recent = int(is_recent.sum())
    if num_recent in (0, len(file_names)):
        return None
    weights = torch.where(is_recent, share / num_recent,
                          (1.0 - share) / (len(file_names) - num_recent))
    return WeightedRandomSampler(weights.double(), num_samples=len(file_names),
                                 replacement=True, generator=generator)
