"""The first k choices of a picker (k_center, hybrids, typical clusters) as a plain index list."""
from __future__ import annotations

import numpy as np


def first_picks(picker, size: int, k: int, excluded=()) -> list[int]:
    """Indices the picker chooses, in order, until k or it has none left; `excluded` are
    never available (images already selected)."""
    available = np.ones(size, dtype=bool)
    available[np.asarray(list(excluded), dtype=np.int64)] = False
    chosen: list[int] = []
    while len(chosen) < k and (picked := picker.pick(available)) is not None:
        chosen.append(picked[0])
        available[picked[0]] = False
    return chosen
