"""Random score: the baseline every strategy must beat."""
from __future__ import annotations

from selection.ids import uniform01
from selection.results import ImageScore


def random_score(image_id, seed: int = 0) -> ImageScore:
    """A uniform number in [0, 1) fixed by (seed, image id): the same in every shard and run."""
    return ImageScore(image_id=image_id, method="random", score=uniform01(image_id, seed, "random"))
